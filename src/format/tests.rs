//! Unit and property tests of the inspector on images built here byte by byte (the real
//! images made by qemu-img are checked in tests/inspect.rs and tests/format.rs).

use proptest::prelude::*;

use super::*;

const MIB: usize = 1024 * 1024;

fn rules(disk: Option<&str>) -> Rules {
    Rules {
        disk_format: disk.map(String::from),
        container_format: Some("bare".into()),
        on_mismatch: OnMismatch::Reject,
    }
}

/// Feeds `data` in the given chunk sizes (cycled), then finishes.
fn inspect_split(data: &[u8], rules: Rules, splits: &[usize]) -> Result<Inspection, Refusal> {
    let mut i = Inspector::new(rules);
    let mut rest = data;
    let mut k = 0;
    while !rest.is_empty() {
        let n = if splits.is_empty() {
            rest.len()
        } else {
            splits[k % splits.len()].clamp(1, rest.len())
        };
        k += 1;
        i.feed(&rest[..n]);
        rest = &rest[n..];
    }
    i.finish()
}

fn inspect(data: &[u8], disk: Option<&str>) -> Result<Inspection, Refusal> {
    inspect_split(data, rules(disk), &[])
}

fn problem(data: &[u8], disk: Option<&str>) -> Problem {
    match inspect(data, disk) {
        Err(r) => r.problem,
        Ok(i) => panic!("accepted as {:?}", i),
    }
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put_be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn put_le16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A qcow2 image as qemu-img lays out an empty one: header, refcount table in cluster 1,
/// refcount block in 2, L1 table in 3 (64 KiB clusters, 64 MiB disk).
fn qcow2(version: u32) -> Vec<u8> {
    let mut b = vec![0u8; 3 * 65536 + 8];
    b[..4].copy_from_slice(b"QFI\xfb");
    put_be32(&mut b, 4, version);
    put_be32(&mut b, 20, 16);
    put_be64(&mut b, 24, 64 << 20);
    put_be32(&mut b, 36, 1);
    put_be64(&mut b, 40, 3 * 65536);
    put_be64(&mut b, 48, 65536);
    put_be32(&mut b, 56, 1);
    if version == 3 {
        put_be32(&mut b, 96, 4);
        put_be32(&mut b, 100, 112);
        // A feature name table extension, then the end marker.
        put_be32(&mut b, 112, 0x6803_f857);
        put_be32(&mut b, 116, 48);
    }
    b
}

/// A monolithicSparse (or streamOptimized) VMDK with an embedded descriptor.
fn vmdk(create_type: &str, extent: &str) -> Vec<u8> {
    let mut b = vec![0u8; 65536];
    b[..4].copy_from_slice(b"KDMV");
    put_le32(&mut b, 4, 1);
    put_le32(&mut b, 8, 3);
    put_le64(&mut b, 12, 131_072); // 64 MiB
    put_le64(&mut b, 20, 128);
    put_le64(&mut b, 28, 1);
    put_le64(&mut b, 36, 20);
    put_le32(&mut b, 44, 512);
    put_le64(&mut b, 48, 21);
    put_le64(&mut b, 56, 30);
    let desc = format!(
        "# Disk DescriptorFile\nversion=1\nCID=5821fa0f\nparentCID=ffffffff\n\
         createType=\"{create_type}\"\n\n# Extent description\n{extent}\n\n\
         # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n"
    );
    b[512..512 + desc.len()].copy_from_slice(desc.as_bytes());
    b
}

/// A dynamic VHD of 64 MiB: footer copy, dynamic header, block table, footer.
fn vhd_dynamic() -> Vec<u8> {
    let mut b = vec![0u8; 2560];
    let footer = vhd_footer(3, 64 << 20, 512);
    b[..512].copy_from_slice(&footer);
    b[512..520].copy_from_slice(b"cxsparse");
    put_be64(&mut b, 512 + 16, 1536);
    put_be32(&mut b, 512 + 28, 32);
    put_be32(&mut b, 512 + 32, 2 << 20);
    b[2048..].copy_from_slice(&footer);
    b
}

fn vhd_footer(disk_type: u32, size: u64, data_offset: u64) -> Vec<u8> {
    let mut f = vec![0u8; 512];
    f[..8].copy_from_slice(b"conectix");
    put_be64(&mut f, 16, data_offset);
    f[28..32].copy_from_slice(b"qemu");
    put_be64(&mut f, 40, size);
    put_be64(&mut f, 48, size);
    put_be32(&mut f, 60, disk_type);
    f
}

fn guid_bytes(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    g[4..6].copy_from_slice(&[raw[5], raw[4]]);
    g[6..8].copy_from_slice(&[raw[7], raw[6]]);
    g[8..].copy_from_slice(&raw[8..]);
    g
}

/// A VHDX of `size` bytes: region table at 192 KiB, BAT at 2 MiB, metadata at 3 MiB.
fn vhdx(size: u64, extra_item: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 4 * MIB];
    b[..8].copy_from_slice(b"vhdxfile");
    let rt = 192 * 1024;
    b[rt..rt + 4].copy_from_slice(b"regi");
    put_le32(&mut b, rt + 8, 2);
    let e = rt + 16;
    b[e..e + 16].copy_from_slice(&guid_bytes("2DC27766-F623-4200-9D64-115E9BFD4A08"));
    put_le64(&mut b, e + 16, 2 * MIB as u64);
    put_le32(&mut b, e + 24, MIB as u32);
    put_le32(&mut b, e + 28, 1);
    let e = e + 32;
    b[e..e + 16].copy_from_slice(&guid_bytes("8B7CA206-4790-4B9A-B8FE-575F050F886E"));
    put_le64(&mut b, e + 16, 3 * MIB as u64);
    put_le32(&mut b, e + 24, MIB as u32);
    put_le32(&mut b, e + 28, 1);
    let m = 3 * MIB;
    b[m..m + 8].copy_from_slice(b"metadata");
    let mut items = vec![
        ("CAA16737-FA36-4D43-B3B6-33F0AA44E76B", 65536u32),
        ("2FA54224-CD1B-4876-B211-5DBED83BF4B8", 65544),
    ];
    if let Some(extra) = extra_item {
        items.push((extra, 65552));
    }
    put_le16(&mut b, m + 10, items.len() as u16);
    for (i, (id, off)) in items.iter().enumerate() {
        let e = m + 32 + 32 * i;
        b[e..e + 16].copy_from_slice(&guid_bytes(id));
        put_le32(&mut b, e + 16, *off);
        put_le32(&mut b, e + 20, 8);
        put_le32(&mut b, e + 24, 0b100);
    }
    put_le32(&mut b, m + 65536, 32 * MIB as u32);
    put_le64(&mut b, m + 65544, size);
    b
}

/// A dynamic VDI of 64 MiB with no block allocated.
fn vdi() -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[..40].copy_from_slice(b"<<< Oracle VM VirtualBox Disk Image >>>\n");
    put_le32(&mut b, 0x40, 0xbeda_107f);
    put_le32(&mut b, 0x44, 0x0001_0001);
    put_le32(&mut b, 0x48, 0x190);
    put_le32(&mut b, 0x4c, 1);
    put_le32(&mut b, 0x154, 512);
    put_le32(&mut b, 0x158, 1024);
    put_le32(&mut b, 0x168, 512);
    put_le64(&mut b, 0x170, 64 << 20);
    put_le32(&mut b, 0x178, 1 << 20);
    put_le32(&mut b, 0x180, 64);
    b[0x188] = 0x42; // the image's own UUID
    b
}

/// An ISO of `blocks` 2 KiB blocks.
fn iso(blocks: u32) -> Vec<u8> {
    let mut b = vec![0u8; blocks as usize * 2048];
    let p = 32768;
    b[p..p + 7].copy_from_slice(b"\x01CD001\x01");
    put_le32(&mut b, p + 80, blocks);
    put_le16(&mut b, p + 128, 2048);
    b
}

/// 1 MiB of raw disk with a protective MBR and a GPT header.
fn gpt() -> Vec<u8> {
    let mut b = vec![0u8; MIB];
    let e = 446;
    b[e + 1..e + 4].copy_from_slice(&[0, 2, 0]);
    b[e + 4] = 0xEE;
    put_le32(&mut b, e + 8, 1);
    put_le32(&mut b, e + 12, 2047);
    b[510] = 0x55;
    b[511] = 0xAA;
    b[512..520].copy_from_slice(b"EFI PART");
    b
}

fn mbr() -> Vec<u8> {
    let mut b = vec![0u8; MIB];
    b[446] = 0x80;
    b[446 + 4] = 0x83;
    put_le32(&mut b, 446 + 8, 2048);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

#[test]
fn recognises_each_format_with_its_virtual_size() {
    let cases: Vec<(Vec<u8>, &str, Format, u64)> = vec![
        (qcow2(2), "qcow2", Format::Qcow2, 64 << 20),
        (qcow2(3), "qcow2", Format::Qcow2, 64 << 20),
        (
            vmdk("monolithicSparse", "RW 131072 SPARSE \"a.vmdk\""),
            "vmdk",
            Format::Vmdk,
            64 << 20,
        ),
        (
            vmdk("streamOptimized", "RW 131072 SPARSE \"a.vmdk\""),
            "vmdk",
            Format::Vmdk,
            64 << 20,
        ),
        (vhd_dynamic(), "vhd", Format::Vhd, 64 << 20),
        (vhdx(64 << 20, None), "vhdx", Format::Vhdx, 64 << 20),
        (vdi(), "vdi", Format::Vdi, 64 << 20),
        (iso(40), "iso", Format::Iso, 40 * 2048),
        (gpt(), "raw", Format::Gpt, MIB as u64),
        (mbr(), "raw", Format::Mbr, MIB as u64),
        (vec![7u8; 100_000], "raw", Format::Raw, 100_000),
        (Vec::new(), "raw", Format::Raw, 0),
    ];
    for (data, declared, format, size) in cases {
        let got = inspect(&data, Some(declared));
        let got = got.unwrap_or_else(|r| panic!("{format:?} refused: {r}"));
        assert_eq!((got.format, got.virtual_size), (format, size), "{format:?}");
        assert_eq!(got.size, data.len() as u64);
    }
}

#[test]
fn fixed_vhd_is_vhd_or_raw() {
    let mut data = vec![1u8; 8 * MIB];
    data.extend(vhd_footer(2, 8 * MIB as u64, u64::MAX));
    let got = inspect(&data, Some("vhd")).unwrap();
    assert_eq!(
        (got.format, got.virtual_size),
        (Format::VhdFixed, 8 * MIB as u64)
    );
    let got = inspect(&data, Some("raw")).unwrap();
    assert_eq!(got.virtual_size, data.len() as u64);
    // A footer claiming more than precedes it.
    let mut short = vec![1u8; MIB];
    short.extend(vhd_footer(2, 8 * MIB as u64, u64::MAX));
    assert_eq!(problem(&short, Some("vhd")), Problem::Truncated);
    // Raw data without the footer is not a VHD.
    assert_eq!(problem(&vec![1u8; MIB], Some("vhd")), Problem::Mismatch);
}

#[test]
fn qcow2_rules() {
    let mut b = qcow2(3);
    put_be64(&mut b, 8, 0x200);
    put_be32(&mut b, 16, 11);
    assert_eq!(problem(&b, Some("qcow2")), Problem::BackingFile);
    // Whatever is declared: the safety rule comes first.
    assert_eq!(problem(&b, Some("raw")), Problem::BackingFile);
    assert_eq!(problem(&b, None), Problem::BackingFile);

    let mut b = qcow2(3);
    put_be64(&mut b, 72, 1 << 2);
    assert_eq!(problem(&b, Some("qcow2")), Problem::DataFile);

    let mut b = qcow2(3);
    put_be32(&mut b, 168, 0x4441_5441); // after the feature table: a data file name
    put_be32(&mut b, 172, 11);
    assert_eq!(problem(&b, Some("qcow2")), Problem::DataFile);

    let mut b = qcow2(3);
    put_be64(&mut b, 72, 1 << 10);
    assert_eq!(problem(&b, Some("qcow2")), Problem::UnknownFeatures);

    let mut b = qcow2(3);
    put_be64(&mut b, 72, 1 << 1);
    assert_eq!(problem(&b, Some("qcow2")), Problem::Invalid);

    let mut b = qcow2(3);
    put_be64(&mut b, 72, 1 | (1 << 3)); // dirty, compression type: known, fine
    inspect(&b, Some("qcow2")).unwrap();
}

#[test]
fn qcow2_header_values_are_checked() {
    let bad: Vec<(usize, u64, bool)> = vec![
        (4, 1, false),        // version 1
        (20, 8, false),       // cluster_bits too small
        (20, 40, false),      // cluster_bits too large
        (32, 3, false),       // encryption method
        (100, 100, false),    // header length too short
        (100, 70_000, false), // header length past the cluster
        (96, 7, false),       // refcount order
        (36, 0, false),       // L1 too small for the size
        (48, 12345, false),   // unaligned refcount table
        (60, 70_000, false),  // too many snapshots
        (24, 1 << 62, true),  // virtual size too large
        (24, u64::MAX, true), // size 2^64-1
        (40, 1 << 40, true),  // L1 table beyond the end
        (56, 100_000, false), // refcount table too large
    ];
    for (at, value, wide) in bad {
        let mut b = qcow2(3);
        if wide {
            put_be64(&mut b, at, value);
        } else {
            put_be32(&mut b, at, value as u32);
        }
        let p = problem(&b, Some("qcow2"));
        assert!(
            matches!(p, Problem::Invalid | Problem::Truncated),
            "field at {at} = {value}: {p:?}"
        );
    }
}

#[test]
fn qcow2_extension_walk_is_bounded() {
    // An extension whose length runs past the cluster.
    let mut b = qcow2(3);
    put_be32(&mut b, 116, 0xFFFF_FFF0);
    assert_eq!(problem(&b, Some("qcow2")), Problem::Invalid);
    // Extensions that never end inside the 64 KiB cluster.
    let mut b = qcow2(3);
    let mut at = 112;
    while at + 8 <= 65536 {
        put_be32(&mut b, at, 0x1234);
        put_be32(&mut b, at + 4, 0);
        at += 8;
    }
    assert_eq!(problem(&b, Some("qcow2")), Problem::Invalid);
}

#[test]
fn truncated_headers_are_refused() {
    let q = qcow2(3);
    for len in [4, 40, 71, 100, 120, 65536, 131072] {
        assert_eq!(
            problem(&q[..len], Some("qcow2")),
            Problem::Truncated,
            "{len}"
        );
    }
    let v = vdi();
    assert_eq!(problem(&v[..300], Some("vdi")), Problem::Truncated);
    let x = vhdx(64 << 20, None);
    for len in [1024, 200 * 1024, 3 * MIB + 100] {
        assert_eq!(
            problem(&x[..len], Some("vhdx")),
            Problem::Truncated,
            "{len}"
        );
    }
    let d = vhd_dynamic();
    assert_eq!(problem(&d[..300], Some("vhd")), Problem::Truncated);
    assert_eq!(problem(&d[..1000], Some("vhd")), Problem::Truncated);
    let k = vmdk("monolithicSparse", "RW 131072 SPARSE \"a.vmdk\"");
    assert_eq!(problem(&k[..400], Some("vmdk")), Problem::Truncated);
    let i = iso(40);
    assert_eq!(problem(&i[..40_000], Some("iso")), Problem::Truncated);
}

#[test]
fn vmdk_rules() {
    let flat = vmdk("monolithicFlat", "RW 131072 FLAT \"a-flat.vmdk\" 0");
    assert_eq!(problem(&flat, Some("vmdk")), Problem::CreateType);
    let two_gb = vmdk("twoGbMaxExtentSparse", "RW 4192256 SPARSE \"a-s001.vmdk\"");
    assert_eq!(problem(&two_gb, Some("vmdk")), Problem::CreateType);
    let passwd = vmdk("monolithicSparse", "RW 2048 FLAT \"/etc/passwd\" 0");
    assert_eq!(problem(&passwd, Some("vmdk")), Problem::Extent);
    let path = vmdk("monolithicSparse", "RW 2048 SPARSE \"../other.vmdk\"");
    assert_eq!(problem(&path, Some("vmdk")), Problem::Extent);
    let two = vmdk(
        "monolithicSparse",
        "RW 2048 SPARSE \"a.vmdk\"\nRW 2048 SPARSE \"b.vmdk\"",
    );
    assert_eq!(problem(&two, Some("vmdk")), Problem::Extent);
    let mut parent = vmdk("monolithicSparse", "RW 131072 SPARSE \"a.vmdk\"");
    let hint = b"parentFileNameHint=\"/etc/shadow\"\n";
    let end = 512 + parent[512..].iter().position(|&b| b == 0).unwrap_or(0);
    parent[end..end + hint.len()].copy_from_slice(hint);
    assert_eq!(problem(&parent, Some("vmdk")), Problem::BackingFile);
    let mut junk = vmdk("monolithicSparse", "RW 131072 SPARSE \"a.vmdk\"");
    let end = 512 + junk[512..].iter().position(|&b| b == 0).unwrap_or(0);
    junk[end..end + 10].copy_from_slice(b"what is it");
    assert_eq!(problem(&junk, Some("vmdk")), Problem::Invalid);
}

#[test]
fn vmdk_text_descriptors_are_refused() {
    let flat = "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n\
                createType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n";
    assert_eq!(problem(flat.as_bytes(), Some("vmdk")), Problem::CreateType);
    // Declared raw, it is still a descriptor a probing hypervisor would follow.
    assert_eq!(problem(flat.as_bytes(), Some("raw")), Problem::CreateType);
    let sparse = flat.replace("monolithicFlat", "monolithicSparse");
    assert_eq!(problem(sparse.as_bytes(), Some("vmdk")), Problem::Extent);
}

#[test]
fn vmdk_stream_footer() {
    let mut b = vmdk("streamOptimized", "RW 131072 SPARSE \"a.vmdk\"");
    put_le64(&mut b, 56, u64::MAX); // grain directory in the footer
    let header = b[..512].to_vec();
    let mut marker = vec![0u8; 512];
    put_le32(&mut marker, 12, 3);
    let mut footer = header.clone();
    put_le64(&mut footer, 56, 30);
    put_le64(&mut footer, 12, 262_144); // qemu takes the footer's capacity
    b.extend(&marker);
    b.extend(&footer);
    b.extend(vec![0u8; 512]);
    let got = inspect(&b, Some("vmdk")).unwrap();
    assert_eq!(got.virtual_size, 128 << 20);
    // A footer that points to another footer, or a broken end-of-stream marker.
    let n = b.len();
    let mut again = b.clone();
    put_le64(&mut again, n - 1024 + 56, u64::MAX);
    assert_eq!(problem(&again, Some("vmdk")), Problem::Invalid);
    let mut eos = b.clone();
    eos[n - 1] = 1;
    assert_eq!(problem(&eos, Some("vmdk")), Problem::Invalid);
}

#[test]
fn vhd_vhdx_vdi_rules() {
    let mut diff = vhd_dynamic();
    put_be32(&mut diff, 60, 4);
    assert_eq!(problem(&diff, Some("vhd")), Problem::BackingFile);
    let mut block = vhd_dynamic();
    put_be32(&mut block, 512 + 32, 3000);
    assert_eq!(problem(&block, Some("vhd")), Problem::Invalid);
    let mut bat = vhd_dynamic();
    put_be64(&mut bat, 512 + 16, 1 << 40);
    assert_eq!(problem(&bat, Some("vhd")), Problem::Truncated);

    let parent = vhdx(64 << 20, Some("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C"));
    assert_eq!(problem(&parent, Some("vhdx")), Problem::BackingFile);
    let unknown = vhdx(64 << 20, Some("00000000-1111-2222-3333-444444444444"));
    assert_eq!(problem(&unknown, Some("vhdx")), Problem::Invalid);
    let huge = vhdx(1 << 50, None);
    assert_eq!(problem(&huge, Some("vhdx")), Problem::Invalid);
    let mut has_parent = vhdx(64 << 20, None);
    put_le32(&mut has_parent, 3 * MIB + 65536 + 4, 0b10);
    assert_eq!(problem(&has_parent, Some("vhdx")), Problem::BackingFile);

    let mut v = vdi();
    put_le32(&mut v, 0x4c, 4);
    assert_eq!(problem(&v, Some("vdi")), Problem::BackingFile);
    let mut v = vdi();
    v[0x1b8] = 1; // a parent UUID
    assert_eq!(problem(&v, Some("vdi")), Problem::BackingFile);
    let mut v = vdi();
    put_le64(&mut v, 0x170, 1 << 40);
    assert_eq!(problem(&v, Some("vdi")), Problem::Invalid);
    let mut v = vdi();
    put_le32(&mut v, 0x184, 10); // ten allocated blocks that are not there
    assert_eq!(problem(&v, Some("vdi")), Problem::Truncated);
}

#[test]
fn declared_format_must_match() {
    assert_eq!(problem(&qcow2(3), Some("raw")), Problem::Mismatch);
    assert_eq!(problem(&qcow2(3), Some("vmdk")), Problem::Mismatch);
    assert_eq!(problem(&vdi(), Some("ami")), Problem::Mismatch);
    assert_eq!(problem(&vec![0u8; 4096], Some("qcow2")), Problem::Mismatch);
    assert_eq!(problem(&gpt(), Some("iso")), Problem::Mismatch);
    // ISOs, partitioned raw and Amazon formats are raw underneath.
    let i = iso(40);
    assert_eq!(
        inspect(&i, Some("raw")).unwrap().virtual_size,
        i.len() as u64
    );
    inspect(&gpt(), Some("aki")).unwrap();
    // Nothing declared, or a container that is not a bare disk: safety rules only.
    assert_eq!(inspect(&qcow2(3), None).unwrap().format, Format::Qcow2);
    let ovf = Rules {
        disk_format: Some("raw".into()),
        container_format: Some("ovf".into()),
        on_mismatch: OnMismatch::Reject,
    };
    inspect_split(&qcow2(3), ovf, &[]).unwrap();
    // Warn: accepted with a warning, read as declared.
    let warn = Rules {
        on_mismatch: OnMismatch::Warn,
        ..rules(Some("raw"))
    };
    let got = inspect_split(&qcow2(3), warn, &[]).unwrap();
    assert!(got.warning.unwrap().contains("does not match"));
    assert_eq!(got.virtual_size, qcow2(3).len() as u64);
}

#[test]
fn mismatch_is_found_before_the_end() {
    let mut i = Inspector::new(rules(Some("raw")));
    i.feed(&qcow2(3)[..HEAD_LEN]);
    assert_eq!(i.refusal().map(|r| r.problem), Some(Problem::Mismatch));
    let mut i = Inspector::new(rules(Some("qcow2")));
    i.feed(&qcow2(3)[..HEAD_LEN]);
    assert!(i.refusal().is_none());
}

#[test]
fn two_formats_in_one_are_refused() {
    let mut b = iso(40);
    b[..qcow2(3).len().min(200)].copy_from_slice(&qcow2(3)[..200]);
    assert_eq!(problem(&b, Some("qcow2")), Problem::Invalid);
    let mut b = qcow2(3);
    b[510] = 0x55;
    b[511] = 0xAA;
    assert_eq!(problem(&b, Some("qcow2")), Problem::Invalid);
    // A hybrid ISO (an MBR in front) is an ISO.
    let mut h = iso(40);
    h[..512].copy_from_slice(&mbr()[..512]);
    assert_eq!(inspect(&h, Some("iso")).unwrap().format, Format::Iso);
}

#[test]
fn mbr_rules() {
    let mut b = mbr();
    b[446] = 0x12;
    assert_eq!(problem(&b, Some("raw")), Problem::Invalid);
    let mut b = mbr();
    b[446 + 4] = 0;
    assert_eq!(problem(&b, Some("raw")), Problem::Invalid);
    let mut b = gpt();
    b[446 + 16 + 4] = 0x83;
    assert_eq!(problem(&b, Some("raw")), Problem::Invalid);
    let mut b = gpt();
    b[512..520].copy_from_slice(b"NOT PART");
    assert_eq!(problem(&b, Some("raw")), Problem::Invalid);
    // A FAT file system's boot sector is not a partition table.
    let mut fat = mbr();
    fat[446] = 0x12;
    fat[0x10] = 2;
    fat[0x15] = 0xF8;
    assert_eq!(inspect(&fat, Some("raw")).unwrap().format, Format::Raw);
}

#[test]
fn qed_is_refused() {
    let mut b = vec![0u8; 4096];
    b[..4].copy_from_slice(b"QED\0");
    assert_eq!(problem(&b, Some("raw")), Problem::Invalid);
}

#[test]
fn messages_name_the_reason() {
    let mut b = qcow2(3);
    put_be64(&mut b, 8, 0x200);
    let r = inspect(&b, Some("qcow2")).unwrap_err();
    assert!(r.message.contains("backing file"), "{r}");
    let r = inspect(&qcow2(3), Some("raw")).unwrap_err();
    assert!(r.message.contains("does not match"), "{r}");
    assert!(
        r.message.contains("qcow2") && r.message.contains("raw"),
        "{r}"
    );
    let r = inspect(&qcow2(3)[..50], Some("qcow2")).unwrap_err();
    assert!(r.message.contains("truncated"), "{r}");
}

#[test]
fn memory_stays_bounded_on_long_data() {
    let mut i = Inspector::new(rules(Some("raw")));
    let chunk = vec![3u8; MIB];
    for _ in 0..64 {
        i.feed(&chunk);
        assert!(i.tail.len() <= TAIL_LEN);
        assert!(i.head.capacity() <= HEAD_LEN + MIB);
    }
    assert_eq!(i.finish().unwrap().size, 64 * MIB as u64);
}

/// Images the property tests split and damage.
fn corpus() -> Vec<(Vec<u8>, &'static str)> {
    let mut stream = vmdk("streamOptimized", "RW 131072 SPARSE \"a.vmdk\"");
    put_le64(&mut stream, 56, u64::MAX);
    let mut tail = vec![0u8; 1536];
    put_le32(&mut tail, 12, 3);
    tail[512..1024].copy_from_slice(&stream[..512]);
    put_le64(&mut tail, 512 + 56, 30);
    stream.extend(tail);
    let mut fixed = vec![9u8; 3 * 65536];
    fixed.extend(vhd_footer(2, 3 * 65536, u64::MAX));
    vec![
        (qcow2(2), "qcow2"),
        (qcow2(3), "qcow2"),
        (
            vmdk("monolithicSparse", "RW 131072 SPARSE \"a.vmdk\""),
            "vmdk",
        ),
        (stream, "vmdk"),
        (vhd_dynamic(), "vhd"),
        (fixed, "vhd"),
        (vhdx(64 << 20, None), "vhdx"),
        (vdi(), "vdi"),
        (iso(40), "iso"),
        (gpt(), "raw"),
        (mbr(), "raw"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes: never a panic; the verdict does not depend on the split.
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..100_000),
                    splits in proptest::collection::vec(1usize..70_000, 1..8)) {
        let whole = inspect_split(&data, rules(Some("raw")), &[]);
        let split = inspect_split(&data, rules(Some("raw")), &splits);
        prop_assert_eq!(whole, split);
    }

    /// Real headers split at random places give the verdict of the whole.
    #[test]
    fn splits_do_not_change_the_verdict(which in 0usize..11,
                                        splits in proptest::collection::vec(1usize..300_000, 1..12)) {
        let (data, declared) = corpus().swap_remove(which);
        let whole = inspect_split(&data, rules(Some(declared)), &[]);
        prop_assert!(whole.is_ok(), "{:?}", whole);
        let split = inspect_split(&data, rules(Some(declared)), &splits);
        prop_assert_eq!(whole, split);
    }

    /// Damaged headers: never a panic, and still the same verdict whatever the split.
    #[test]
    fn damaged_headers(which in 0usize..11,
                       damage in proptest::collection::vec((0usize..70_000, any::<u8>()), 1..16),
                       cut in proptest::option::of(0usize..4_500_000),
                       splits in proptest::collection::vec(1usize..200_000, 1..6)) {
        let (mut data, declared) = corpus().swap_remove(which);
        for (at, byte) in damage {
            if at < data.len() {
                data[at] = byte;
            }
        }
        if let Some(cut) = cut {
            data.truncate(cut);
        }
        let whole = inspect_split(&data, rules(Some(declared)), &[]);
        let split = inspect_split(&data, rules(Some(declared)), &splits);
        prop_assert_eq!(whole, split);
    }
}
