//! Disk images for the format-inspection tests, made at test time in a temp dir with the
//! real tools (`qemu-img`, `xorriso`, `sfdisk`), plus hand-crafted hostile headers, and
//! what `qemu-img info` makes of each.
//!
//! Every builder takes the directory to work in and returns the file to upload; files it
//! needs beside it (a flat extent, an external data file) stay in that directory. The
//! virtual disks are small ([`VIRTUAL_SIZE`]) but not empty: [`pattern_raw`] puts a few MiB
//! of non-zero bytes in them.
//!
//! Crafted headers follow the on-disk layouts: qcow2 is big-endian
//! (`docs/interop/qcow2.txt` of QEMU), VMDK, VHDX and VDI little-endian.
//!
//! When a tool is missing, [`tools_present`] prints why and the test passes without running,
//! unless `GLANCE_TEST_REQUIRE_SERVICES=1` (set by `.ci/run`), which makes it fail, as for
//! the object stores (`tests/common/objstore.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Virtual size of the generated disks: 64 MiB.
pub const VIRTUAL_SIZE: u64 = 64 << 20;

/// The tools the builders run, with the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-img", "qemu-utils"),
    ("xorriso", "xorriso"),
    ("sfdisk", "fdisk"),
];

/// Where `name` is: on `PATH`, or in the sbin directories a non-root `PATH` may lack.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when every tool is installed; else prints why and returns false (a panic under
/// `GLANCE_TEST_REQUIRE_SERVICES=1`).
pub fn tools_present(test: &str) -> bool {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| tool(t).is_none())
        .map(|(t, pkg)| format!("{t} (Debian package {pkg})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    let required = std::env::var("GLANCE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: the image tools are required (GLANCE_TEST_REQUIRE_SERVICES=1) but missing: \
         {missing}; `.ci/run` installs them"
    );
    eprintln!(
        "SKIPPED {test}: missing {missing} (set GLANCE_TEST_REQUIRE_SERVICES=1 to make this a \
         failure)"
    );
    false
}

/// Runs `program args...` (stdin from `input`) and returns its stdout; panics with stderr
/// when it fails.
fn run(program: &str, args: &[&str], input: Option<&str>) -> String {
    let exe = tool(program).unwrap_or_else(|| panic!("{program} is not installed"));
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{program} stdin: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

/// What `qemu-img info --output=json [-f format] path` says: the format and the virtual
/// size; the error text when qemu-img refuses the file.
pub fn qemu_info_result(path: &Path, format: Option<&str>) -> Result<(String, u64), String> {
    let exe = tool("qemu-img").ok_or("qemu-img is not installed")?;
    let mut cmd = Command::new(exe);
    cmd.args(["info", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("qemu-img info output is not JSON ({e})"))?;
    let fmt = v["format"].as_str().ok_or("no \"format\"")?.to_string();
    let size = v["virtual-size"].as_u64().ok_or("no \"virtual-size\"")?;
    Ok((fmt, size))
}

/// [`qemu_info_result`], panicking when qemu-img refuses the file.
pub fn qemu_info(path: &Path, format: Option<&str>) -> (String, u64) {
    qemu_info_result(path, format)
        .unwrap_or_else(|e| panic!("qemu-img info {}: {e}", path.display()))
}

// --- Raw material ---------------------------------------------------------------------------

/// `<dir>/pattern.raw`: a sparse raw disk of [`VIRTUAL_SIZE`] with 4 MiB of non-zero bytes
/// from 1 MiB on (made once per directory).
pub fn pattern_raw(dir: &Path) -> PathBuf {
    let path = dir.join("pattern.raw");
    if path.exists() {
        return path;
    }
    let f = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.set_len(VIRTUAL_SIZE)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(7).wrapping_add(13) % 251) as u8)
        .collect();
    f.write_all_at(&data, 1 << 20)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// `qemu-img convert -f raw -O <format> [extra...]` of the pattern into `<dir>/<name>`.
fn convert(dir: &Path, name: &str, format: &str, extra: &[&str]) -> PathBuf {
    let src = pattern_raw(dir);
    let out = dir.join(name);
    let mut args = vec!["convert", "-f", "raw", "-O", format];
    args.extend_from_slice(extra);
    args.extend([s(&src), s(&out)]);
    run("qemu-img", &args, None);
    out
}

/// A copy of the first `len` bytes of `src` as `<dir>/<name>`.
fn head(src: &Path, dir: &Path, name: &str, len: usize) -> PathBuf {
    let bytes = fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let out = dir.join(name);
    fs::write(&out, &bytes[..len.min(bytes.len())])
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out
}

/// Overwrites bytes of `path` at `offset`.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all_at(bytes, offset)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    buf
}

// --- Raw disks ------------------------------------------------------------------------------

/// The pattern disk as a plain raw image.
pub fn raw_plain(dir: &Path) -> PathBuf {
    let out = dir.join("plain.raw");
    fs::copy(pattern_raw(dir), &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out
}

/// A raw disk partitioned by `sfdisk` with `script`.
fn partitioned(dir: &Path, name: &str, script: &str) -> PathBuf {
    let out = raw_plain(dir);
    let target = dir.join(name);
    fs::rename(&out, &target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    run("sfdisk", &["--quiet", s(&target)], Some(script));
    target
}

/// A raw disk with a GPT (two Linux partitions).
pub fn raw_gpt(dir: &Path) -> PathBuf {
    partitioned(dir, "gpt.raw", "label: gpt\nsize=32MiB, type=linux\n,\n")
}

/// A raw disk with an MBR (two Linux partitions).
pub fn raw_mbr(dir: &Path) -> PathBuf {
    partitioned(dir, "mbr.raw", "label: dos\nsize=32MiB, type=83\n,\n")
}

// --- ISO 9660 -------------------------------------------------------------------------------

/// A directory of files for an ISO (3 MB of pattern bytes and a text file).
fn iso_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("iso-tree");
    if tree.exists() {
        return tree;
    }
    fs::create_dir(&tree).unwrap_or_else(|e| panic!("{}: {e}", tree.display()));
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 249) as u8 + 1).collect();
    fs::write(tree.join("data.bin"), data).unwrap_or_else(|e| panic!("iso tree: {e}"));
    fs::write(tree.join("readme.txt"), "glance-rs format test\n")
        .unwrap_or_else(|e| panic!("iso tree: {e}"));
    tree
}

/// A plain ISO 9660 image (Rock Ridge and Joliet) by `xorriso -as mkisofs`.
pub fn iso(dir: &Path) -> PathBuf {
    let tree = iso_tree(dir);
    let out = dir.join("plain.iso");
    run(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            s(&out),
            "-V",
            "GLANCE",
            "-R",
            "-J",
            s(&tree),
        ],
        None,
    );
    out
}

/// A hybrid ISO: ISO 9660 plus a GPT (an appended EFI system partition), as bootable
/// distribution images are, so it also reads as a partitioned disk.
pub fn iso_hybrid_gpt(dir: &Path) -> PathBuf {
    let tree = iso_tree(dir);
    let efi = dir.join("efi.img");
    File::create(&efi)
        .and_then(|f| f.set_len(1 << 20))
        .unwrap_or_else(|e| panic!("{}: {e}", efi.display()));
    let out = dir.join("hybrid.iso");
    run(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            s(&out),
            "-V",
            "HYBRID",
            "-R",
            "-append_partition",
            "2",
            "0xef",
            s(&efi),
            "-appended_part_as_gpt",
            s(&tree),
        ],
        None,
    );
    out
}

// --- qcow2 ----------------------------------------------------------------------------------

/// qcow2 version 2 (`compat=0.10`).
pub fn qcow2_v2(dir: &Path) -> PathBuf {
    convert(dir, "v2.qcow2", "qcow2", &["-o", "compat=0.10"])
}

/// qcow2 version 3 (`compat=1.1`).
pub fn qcow2_v3(dir: &Path) -> PathBuf {
    convert(dir, "v3.qcow2", "qcow2", &["-o", "compat=1.1"])
}

/// qcow2 with compressed clusters (`convert -c`).
pub fn qcow2_compressed(dir: &Path) -> PathBuf {
    convert(dir, "compressed.qcow2", "qcow2", &["-c"])
}

/// qcow2 whose backing file is `/etc/passwd` (raw).
pub fn qcow2_backing_file(dir: &Path) -> PathBuf {
    let out = dir.join("backing.qcow2");
    let size = VIRTUAL_SIZE.to_string();
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "/etc/passwd",
            "-F",
            "raw",
            s(&out),
            &size,
        ],
        None,
    );
    out
}

fn with_data_file(dir: &Path, name: &str, raw: bool) -> PathBuf {
    let out = dir.join(name);
    let data = dir.join(format!("{name}.data"));
    let mut opts = format!("data_file={}", s(&data));
    if raw {
        opts.push_str(",data_file_raw=on");
    }
    let size = VIRTUAL_SIZE.to_string();
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-o", &opts, s(&out), &size],
        None,
    );
    out
}

/// qcow2 with an external data file (`data_file=`); the data file stays in `dir`.
pub fn qcow2_data_file(dir: &Path) -> PathBuf {
    with_data_file(dir, "datafile.qcow2", false)
}

/// qcow2 with an external raw data file (`data_file=…,data_file_raw=on`).
pub fn qcow2_data_file_raw(dir: &Path) -> PathBuf {
    with_data_file(dir, "datafile-raw.qcow2", true)
}

/// The first 40 bytes of a qcow2 v3: the header is cut inside `l1_table_offset`.
pub fn qcow2_truncated_header(dir: &Path) -> PathBuf {
    head(&qcow2_v3(dir), dir, "truncated.qcow2", 40)
}

/// A qcow2 v3 claiming 2^63 bytes in clusters of 2^40 bytes.
pub fn qcow2_invalid_size(dir: &Path) -> PathBuf {
    let out = dir.join("huge.qcow2");
    fs::rename(qcow2_v3(dir), &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    patch(&out, 20, &40u32.to_be_bytes()); // cluster_bits
    patch(&out, 24, &(1u64 << 63).to_be_bytes()); // size
    out
}

/// Sets `bits` in the incompatible features (offset 72) of a fresh qcow2 v3.
fn qcow2_incompatible(dir: &Path, name: &str, bits: u64) -> PathBuf {
    let out = dir.join(name);
    fs::rename(qcow2_v3(dir), &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    patch(&out, 72, &bits.to_be_bytes());
    out
}

/// A qcow2 v3 with incompatible feature bit 10 set (no such feature exists).
pub fn qcow2_unknown_incompatible(dir: &Path) -> PathBuf {
    qcow2_incompatible(dir, "unknown-feature.qcow2", 1 << 10)
}

/// A qcow2 v3 with the external-data-file incompatible bit (bit 2) set, and no data-file
/// header extension naming one.
pub fn qcow2_data_file_bit(dir: &Path) -> PathBuf {
    qcow2_incompatible(dir, "datafile-bit.qcow2", 1 << 2)
}

/// A qcow2 v3 whose first header extension (the feature name table) claims 1 MiB: the
/// extension chain runs far beyond the first cluster.
pub fn qcow2_extension_overrun(dir: &Path) -> PathBuf {
    let out = dir.join("ext-overrun.qcow2");
    fs::rename(qcow2_v3(dir), &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let header = read_at(&out, 0, 120);
    let header_length = u32::from_be_bytes(header[100..104].try_into().unwrap_or_default());
    let at = u64::from(header_length);
    let ext_type = u32::from_be_bytes(
        header[at as usize..at as usize + 4]
            .try_into()
            .unwrap_or_default(),
    );
    assert_eq!(
        ext_type, 0x6803_f857,
        "qemu-img wrote no feature name table first"
    );
    patch(&out, at + 4, &(1u32 << 20).to_be_bytes());
    out
}

// --- VMDK -----------------------------------------------------------------------------------

fn vmdk(dir: &Path, name: &str, subformat: &str) -> PathBuf {
    convert(
        dir,
        name,
        "vmdk",
        &["-o", &format!("subformat={subformat}")],
    )
}

/// VMDK monolithicSparse (hosted sparse extent, descriptor embedded at sector 1).
pub fn vmdk_monolithic_sparse(dir: &Path) -> PathBuf {
    vmdk(dir, "sparse.vmdk", "monolithicSparse")
}

/// VMDK streamOptimized (compressed grains).
pub fn vmdk_stream_optimized(dir: &Path) -> PathBuf {
    vmdk(dir, "stream.vmdk", "streamOptimized")
}

/// The text descriptor of a VMDK monolithicFlat (its extent `flat-flat.vmdk` stays in `dir`).
pub fn vmdk_monolithic_flat(dir: &Path) -> PathBuf {
    vmdk(dir, "flat.vmdk", "monolithicFlat")
}

/// The text descriptor of a VMDK twoGbMaxExtentSparse (its sparse extent stays in `dir`).
pub fn vmdk_two_gb_sparse(dir: &Path) -> PathBuf {
    vmdk(dir, "split.vmdk", "twoGbMaxExtentSparse")
}

/// A descriptor whose one extent is `/etc/passwd`, read as a flat disk.
fn passwd_descriptor(create_type: &str) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
         createType=\"{create_type}\"\n\n# Extent description\n\
         RW 2048 FLAT \"/etc/passwd\" 0\n\n# The Disk Data Base\n#DDB\n\n\
         ddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n"
    )
}

/// Replaces the embedded descriptor of a fresh monolithicSparse VMDK with `text` and sets
/// its capacity (sectors) when `capacity` is given.
fn vmdk_embedded(dir: &Path, name: &str, text: &str, capacity: Option<u64>) -> PathBuf {
    let out = dir.join(name);
    fs::rename(vmdk_monolithic_sparse(dir), &out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let header = read_at(&out, 0, 64);
    assert_eq!(&header[..4], b"KDMV", "not a sparse VMDK");
    let le64 = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let (desc_sector, desc_sectors) = (le64(28), le64(36));
    let room = usize::try_from(desc_sectors * 512).unwrap_or(0);
    assert!(desc_sector > 0 && text.len() < room, "descriptor room");
    let mut desc = text.as_bytes().to_vec();
    desc.resize(room, 0);
    patch(&out, desc_sector * 512, &desc);
    if let Some(sectors) = capacity {
        patch(&out, 12, &sectors.to_le_bytes());
    }
    out
}

/// A real monolithicSparse VMDK whose embedded descriptor (still `monolithicSparse`) names
/// the extent `RW 2048 FLAT "/etc/passwd" 0`. QEMU ignores an embedded descriptor while the
/// header's capacity is set, so it reads this file as a harmless sparse disk.
pub fn vmdk_embedded_extent(dir: &Path) -> PathBuf {
    vmdk_embedded(
        dir,
        "embedded-extent.vmdk",
        &passwd_descriptor("monolithicSparse"),
        None,
    )
}

/// The same with capacity 0 and a `monolithicFlat` descriptor: QEMU then takes the
/// embedded descriptor for the disk's and reads `/etc/passwd` as its data.
pub fn vmdk_embedded_flat_no_capacity(dir: &Path) -> PathBuf {
    vmdk_embedded(
        dir,
        "embedded-flat.vmdk",
        &passwd_descriptor("monolithicFlat"),
        Some(0),
    )
}

/// A text VMDK descriptor (`monolithicFlat`) whose extent is `/etc/passwd`.
pub fn vmdk_descriptor_passwd(dir: &Path) -> PathBuf {
    let out = dir.join("passwd.vmdk");
    fs::write(&out, passwd_descriptor("monolithicFlat"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out
}

// --- VHD, VHDX, VDI -------------------------------------------------------------------------

/// A dynamic VHD (`vpc`, `subformat=dynamic`).
pub fn vhd_dynamic(dir: &Path) -> PathBuf {
    convert(dir, "dynamic.vhd", "vpc", &["-o", "subformat=dynamic"])
}

/// A fixed VHD (`subformat=fixed`): the raw disk plus a 512-byte footer at the end.
/// `qemu-img info` without `-f vpc` calls it raw.
pub fn vhd_fixed(dir: &Path) -> PathBuf {
    convert(dir, "fixed.vhd", "vpc", &["-o", "subformat=fixed"])
}

/// A VHDX (dynamic).
pub fn vhdx(dir: &Path) -> PathBuf {
    convert(dir, "disk.vhdx", "vhdx", &[])
}

/// A VDI (dynamic).
pub fn vdi(dir: &Path) -> PathBuf {
    convert(dir, "disk.vdi", "vdi", &[])
}

/// The first KiB of a VHDX: the file identifier, none of the headers (at 64 KiB on).
pub fn vhdx_truncated(dir: &Path) -> PathBuf {
    head(&vhdx(dir), dir, "truncated.vhdx", 1024)
}

/// The first KiB of a VDI: the header, but not the block map nor any data.
pub fn vdi_truncated(dir: &Path) -> PathBuf {
    head(&vdi(dir), dir, "truncated.vdi", 1024)
}

/// Overwrites the start of `data` (at least 196,616 bytes) with an empty qcow2 v3 image of
/// `virtual_size` bytes as qemu-img lays it out (64 KiB clusters: header, refcount table,
/// refcount block, L1 table), so that tests can upload arbitrary bytes declared `qcow2`:
/// the bytes after the L1 table are not referenced and the inspector accepts them. No tool
/// needed.
pub fn qcow2_over(data: &mut [u8], virtual_size: u64) {
    const CLUSTER: usize = 65536;
    assert!(
        data.len() >= 3 * CLUSTER + 8,
        "qcow2_over needs 196616 bytes"
    );
    data[..3 * CLUSTER + 8].fill(0);
    let be32 = |d: &mut [u8], at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let be64 = |d: &mut [u8], at: usize, v: u64| d[at..at + 8].copy_from_slice(&v.to_be_bytes());
    data[..4].copy_from_slice(b"QFI\xfb");
    be32(data, 4, 3); // version
    be32(data, 20, 16); // cluster bits
    be64(data, 24, virtual_size);
    let l1 = virtual_size.div_ceil(1 << 29).max(1) as u32; // one L1 entry maps 512 MiB
    assert!(
        l1 <= 8192,
        "qcow2_over: virtual size too large for one L1 cluster"
    );
    be32(data, 36, l1);
    be64(data, 40, 3 * CLUSTER as u64); // L1 table
    be64(data, 48, CLUSTER as u64); // refcount table
    be32(data, 56, 1);
    be32(data, 96, 4); // refcount order
    be32(data, 100, 104); // header length
    be64(data, CLUSTER, 2 * CLUSTER as u64); // refcount table -> refcount block
}
