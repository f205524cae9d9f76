//! The `glance` binary end to end, against a real `glance-api` (embedded SQLite registry,
//! filesystem store): every command, its output format, exit status and error paths; a
//! 100 MiB image streamed through `add` and `download`; confirmation prompts and paging
//! prompts on a pseudo-terminal (`script`); the man page.

mod common;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Server;
use md5::{Digest, Md5};

fn api() -> Server {
    common::embedded_api()
}

/// What stdin of a `glance` run is.
enum In<'a> {
    Null,
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "glance failed: {self:#?}");
        self
    }
}

fn base_command(port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glance"));
    common::without_login(&mut cmd)
        .env_remove("GLANCE_HOST")
        .env_remove("GLANCE_PORT")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    cmd
}

/// Runs `glance -H 127.0.0.1 -p PORT ARGS…` with stdin `input`.
fn glance_at(port: u16, args: &[&str], input: In<'_>) -> Run {
    let mut cmd = base_command(port);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    match input {
        In::Null => {
            cmd.stdin(Stdio::null());
        }
        In::Bytes(_) => {
            cmd.stdin(Stdio::piped());
        }
        In::File(p) => {
            let f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            cmd.stdin(Stdio::from(f));
        }
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("glance: {e}"));
    if let In::Bytes(data) = input {
        let mut stdin = child.stdin.take();
        let data = data.to_vec();
        std::thread::spawn(move || {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&data);
            }
        });
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("glance: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn glance(s: &Server, args: &[&str]) -> Run {
    glance_at(s.port(), args, In::Null)
}

/// A port where nobody listens (loopback port 1 refuses connections).
const DOWN: u16 = 1;

fn added_id(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Added new image with ID: "))
        .unwrap_or_else(|| panic!("no ID in {r:#?}"))
        .trim()
        .to_string()
}

fn md5_file(p: &Path) -> String {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read: {e}"));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `size` pseudo-random bytes to `path` and returns their MD5.
fn generate(path: &Path, size: usize) -> String {
    let f = File::create(path).unwrap_or_else(|e| panic!("create: {e}"));
    let mut w = BufWriter::new(f);
    let mut h = Md5::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        for b in chunk[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            b.copy_from_slice(&bytes[..b.len()]);
        }
        h.update(&chunk[..n]);
        w.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("write: {e}"));
        left -= n;
    }
    w.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    hex(&h.finalize())
}

/// Field `key` of a show block.
fn field(block: &str, key: &str) -> Option<String> {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(str::to_string)
}

// --- help, usage errors, connection errors: no server needed -------------------------------

#[test]
fn help_and_version() {
    let r = glance_at(DOWN, &[], In::Null);
    r.ok();
    assert!(r.stdout.contains("Commands:") && r.stdout.contains("Exit status:"));
    let h = glance_at(DOWN, &["--help"], In::Null);
    assert_eq!(h.ok().stdout, r.stdout);
    let h = glance_at(DOWN, &["help"], In::Null);
    assert_eq!(h.ok().stdout, r.stdout);
    for c in glance_rs::cli::COMMANDS {
        let h = glance_at(DOWN, &["help", c.name], In::Null);
        assert!(
            h.ok()
                .stdout
                .starts_with(&format!("Usage: glance {}", c.name)),
            "{h:?}"
        );
    }
    let h = glance_at(DOWN, &["add", "--help"], In::Null);
    assert!(h.ok().stdout.starts_with("Usage: glance add"), "{h:?}");
    let h = glance_at(DOWN, &["help", "image-download"], In::Null);
    assert!(h.ok().stdout.starts_with("Usage: glance download"));
    let v = glance_at(DOWN, &["--version"], In::Null);
    assert!(v.ok().stdout.starts_with("glance "), "{v:?}");
    let bad = glance_at(DOWN, &["help", "frobnicate"], In::Null);
    assert_eq!(bad.code, 2);
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["frobnicate"],
            "glance: Unknown command: frobnicate (see 'glance help')\n",
        ),
        (
            &["add", "name"],
            "glance: Arguments should be in the form of field=value. You specified name.\n",
        ),
        (
            &["add", "distro=debian"],
            "glance: Please specify a name for the image using name=VALUE\n",
        ),
        (
            &["add", "name=x", "is_public=maybe"],
            "glance: is_public=maybe: use true, on or 1 for yes, and false, off or 0 for no\n",
        ),
        (&["index", "--limit", "zero"], ""),
        (&["index", "--sort_dir", "sideways"], ""),
        (&["index", "--bogus"], ""),
        (&["index", "size_min=big"], ""),
        (&["show"], ""),
        (&["delete"], ""),
        (&["delete", "a", "b"], ""),
        (&["update"], ""),
        (&["member-add", "only-one"], ""),
        (&["clear", "extra"], ""),
    ];
    for (args, want) in cases {
        let r = glance_at(DOWN, args, In::Null);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("glance: "), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        if !want.is_empty() {
            assert_eq!(&r.stderr, want, "{args:?}");
        }
    }
}

#[test]
fn server_down_exits_1() {
    for args in [
        &["index"][..],
        &["show", "x"],
        &["add", "name=x"],
        &["member-images", "t"],
        &["delete", "-f", "x"],
    ] {
        let r = glance_at(DOWN, args, In::Null);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert_eq!(
            r.stderr,
            "glance: Failed to connect to the Glance API server 127.0.0.1:1. Is the server running?\n",
            "{args:?}"
        );
    }
    // -v adds the reason.
    let r = glance_at(DOWN, &["-v", "index"], In::Null);
    assert!(r.stderr.contains("Is the server running? ("), "{r:?}");
    // -d adds the error's details on a second line.
    let r = glance_at(DOWN, &["index", "-d"], In::Null);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(lines[1].starts_with("glance: debug: Connect"), "{r:?}");
}

#[test]
fn environment_supplies_host_and_port() {
    let s = api();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glance"));
    let out = cmd
        .env("GLANCE_HOST", "127.0.0.1")
        .env("GLANCE_PORT", s.port().to_string())
        .env("OS_AUTH_TOKEN", "some-token")
        .args(["add", "name=env", "is_public=true"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Added new image with ID: "));
}

// --- the image life cycle ----------------------------------------------------------------------

#[test]
fn add_show_update_download_delete() {
    let s = api();
    let add = glance_at(
        s.port(),
        &[
            "add",
            "name=CliImage",
            "disk_format=raw",
            "container-format=bare",
            "is_public=on",
            "distro=Ubuntu",
            "size=99",
        ],
        In::Bytes(b"abc"),
    );
    add.ok();
    assert_eq!(
        add.stderr,
        "glance: Found non-settable field size. Removing.\n"
    );
    let id = added_id(&add);
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let show = glance(&s, &["show", &id]);
    let block = &show.ok().stdout;
    assert_eq!(
        *block,
        format!(
            "URI: http://127.0.0.1/images/{id}\nId: {id}\nPublic: Yes\nName: CliImage\n\
             Status: active\nSize: 3\nVirtual size: 3\nDisk format: raw\nContainer format: bare\n\
             Minimum Ram Required (MB): 0\nMinimum Disk Required (GB): 0\n\
             Property 'distro': Ubuntu\n"
        )
    );

    let index = glance(&s, &["index"]);
    let lines: Vec<&str> = index.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{index:?}");
    assert_eq!(
        lines[0],
        format!(
            "{:<36} {:<30} {:<20} {:<20} {:<14}",
            "ID", "Name", "Disk Format", "Container Format", "Size"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{id} {:<30} {:<20} {:<20} {:>14}",
            "CliImage", "raw", "bare", 3
        )
    );

    let details = glance(&s, &["details"]);
    let rule = "=".repeat(80);
    assert_eq!(details.ok().stdout, format!("{rule}\n{block}{rule}\n"));

    // Update: named properties replace the old ones; protected fields are dropped.
    let up = glance(
        &s,
        &[
            "update",
            &id,
            "name=Renamed",
            "arch=x86_64",
            "status=killed",
        ],
    );
    up.ok();
    assert_eq!(up.stdout, format!("Updated image {id}\n"));
    assert_eq!(
        up.stderr,
        "glance: Found non-modifiable field status. Removing.\n"
    );
    let show = glance(&s, &["show", &id]);
    let block = &show.ok().stdout;
    assert_eq!(field(block, "Name").as_deref(), Some("Renamed"));
    assert_eq!(field(block, "Status").as_deref(), Some("active"));
    assert_eq!(field(block, "Property 'arch'").as_deref(), Some("x86_64"));
    assert!(!block.contains("distro"), "{block}");
    let up = glance(&s, &["-v", "update", &id, "is_public=false"]);
    assert!(up.ok().stdout.contains("Updated image metadata for image"));
    assert!(up.stdout.contains("Public: No"), "{up:?}");
    assert!(up.stderr.starts_with("Completed in "), "{up:?}");

    // Download to stdout (redirected) and to a file.
    let dir = common::tempdir();
    let out_path = dir.path().join("out");
    let r = glance(
        &s,
        &["download", &id, "--file", out_path.to_str().unwrap_or("")],
    );
    r.ok();
    assert_eq!(std::fs::read(&out_path).ok().as_deref(), Some(&b"abc"[..]));
    let r = glance(&s, &["image-download", &id]);
    assert_eq!(r.ok().stdout, "abc");

    // Delete needs --force without a terminal.
    let r = glance(&s, &["delete", &id]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("standard input is not a terminal"),
        "{r:?}"
    );
    let r = glance(&s, &["delete", "--force", &id]);
    assert_eq!(r.ok().stdout, format!("Deleted image {id}\n"));

    // Not found: exit 3.
    for args in [
        &["show", id.as_str()][..],
        &["delete", "-f", &id],
        &["update", &id, "name=x"],
        &["download", &id],
        &["image-members", &id],
    ] {
        let r = glance(&s, args);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert_eq!(
            r.stderr,
            format!("glance: No image with ID {id} was found\n")
        );
    }
    // Empty listing: no output at all.
    assert_eq!(glance(&s, &["index"]).ok().stdout, "");
    assert_eq!(glance(&s, &["details"]).ok().stdout, "");
}

#[test]
fn add_reserves_then_update_uploads() {
    let s = api();
    let add = glance(&s, &["add", "name=later", "is_public=true"]);
    let id = added_id(add.ok());
    let show = glance(&s, &["show", &id]);
    assert_eq!(
        field(&show.ok().stdout, "Status").as_deref(),
        Some("queued")
    );
    let r = glance(&s, &["download", &id]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is queued: only active images have data"),
        "{r:?}"
    );
    let dir = common::tempdir();
    let p = dir.path().join("data");
    let sum = generate(&p, 70_000);
    let r = glance(&s, &["update", &id, "--file", p.to_str().unwrap_or("")]);
    r.ok();
    let show = glance(&s, &["show", &id]);
    assert_eq!(field(&show.stdout, "Status").as_deref(), Some("active"));
    assert_eq!(field(&show.stdout, "Size").as_deref(), Some("70000"));
    let out = dir.path().join("back");
    glance(&s, &["download", &id, "--file", out.to_str().unwrap_or("")]).ok();
    assert_eq!(md5_file(&out), sum);
    // A second upload is refused (409): exit 1 with the server's message.
    let r = glance(&s, &["update", &id, "--file", p.to_str().unwrap_or("")]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("glance: Failed to update image: "),
        "{r:?}"
    );
    // A server-side refusal: bad disk format.
    let r = glance(&s, &["add", "name=bad", "disk_format=floppy"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("Invalid disk format 'floppy'"), "{r:?}");
}

#[test]
fn virtual_size_is_removed_from_add_and_update() {
    let s = api();
    let add = glance(
        &s,
        &["add", "name=vs", "is_public=true", "virtual_size=1024"],
    );
    assert_eq!(
        add.ok().stderr,
        "glance: Found non-settable field virtual_size. Removing.\n"
    );
    let id = added_id(&add);
    let up = glance(&s, &["update", &id, "virtual-size=7", "name=vs2"]);
    assert_eq!(
        up.ok().stderr,
        "glance: Found non-modifiable field virtual_size. Removing.\n"
    );
    // Unknown until glance computes it: no line, and not a custom property either.
    let show = glance(&s, &["show", &id]);
    let block = &show.ok().stdout;
    assert_eq!(field(block, "Name").as_deref(), Some("vs2"));
    assert!(!block.contains("irtual"), "{block}");
}

#[test]
fn location_registration_and_conflicts() {
    let s = api();
    let id = added_id(
        glance_at(
            s.port(),
            &["add", "name=origin", "is_public=true"],
            In::Bytes(b"remote bytes"),
        )
        .ok(),
    );
    let loc = format!("location={}/v1/images/{id}", s.base);
    let r = glance(&s, &["add", "name=registered", "is_public=true", &loc]);
    let reg = added_id(r.ok());
    let show = glance(&s, &["show", &reg]);
    assert_eq!(
        field(&show.ok().stdout, "Status").as_deref(),
        Some("active")
    );
    let r = glance(&s, &["download", &reg]);
    assert_eq!(r.ok().stdout, "remote bytes");
    // Both data and a location: usage error.
    let r = glance_at(s.port(), &["add", "name=x", &loc], In::Bytes(b"data"));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("You have supplied BOTH"), "{r:?}");
    let r = glance(&s, &["add", "name=x", &loc, "--file", "/etc/hostname"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn a_100_mib_image_streams_through_add_and_download() {
    let s = api();
    let dir = common::tempdir();
    let src = dir.path().join("big.img");
    let sum = generate(&src, 100 * 1024 * 1024);
    let path = src.to_str().unwrap_or("");

    // As --file (Content-Length known).
    let r = glance(&s, &["add", "name=big", "is_public=true", "--file", path]);
    r.ok();
    assert_eq!(r.stderr, "", "no progress without --progress");
    let id1 = added_id(&r);
    // As redirected stdin.
    let r = glance_at(
        s.port(),
        &["add", "name=big-stdin", "is_public=true"],
        In::File(&src),
    );
    let id2 = added_id(r.ok());

    for id in [&id1, &id2] {
        let show = glance(&s, &["show", id]);
        assert_eq!(
            field(&show.ok().stdout, "Size").as_deref(),
            Some("104857600")
        );
        let head =
            common::Client::new(&s.base).request("HEAD", &format!("/v1/images/{id}"), &[], None);
        assert_eq!(head.header("x-image-meta-checksum"), Some(sum.as_str()));
        let out = dir.path().join(format!("{id}.out"));
        glance(&s, &["download", id, "--file", out.to_str().unwrap_or("")]).ok();
        assert_eq!(md5_file(&out), sum);
        let _ = std::fs::remove_file(&out);
    }

    // Download to a redirected stdout.
    let out = dir.path().join("stdout.out");
    let f = File::create(&out).unwrap_or_else(|e| panic!("{e}"));
    let status = base_command(s.port())
        .args(["download", &id1])
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    assert_eq!(md5_file(&out), sum);
}

#[test]
fn a_pipe_is_sent_chunked() {
    let s = api();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let r = glance_at(
        s.port(),
        &["add", "name=piped", "is_public=true"],
        In::Bytes(&data),
    );
    let id = added_id(r.ok());
    let show = glance(&s, &["show", &id]);
    assert_eq!(field(&show.ok().stdout, "Size").as_deref(), Some("3000000"));
    // A reader that stops early (`glance download ID | head -c 10`): exit 0, no message.
    let mut child = base_command(s.port())
        .args(["download", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut first = [0u8; 10];
    if let Some(out) = child.stdout.as_mut() {
        out.read_exact(&mut first)
            .unwrap_or_else(|e| panic!("read: {e}"));
    }
    assert_eq!(&first[..], &data[..10]);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // An empty pipe: an active 0-byte image.
    let r = glance_at(
        s.port(),
        &["add", "name=empty", "is_public=true"],
        In::Bytes(b""),
    );
    let id = added_id(r.ok());
    let show = glance(&s, &["show", &id]);
    assert_eq!(
        field(&show.ok().stdout, "Status").as_deref(),
        Some("active")
    );
    assert_eq!(field(&show.stdout, "Size").as_deref(), Some("0"));
}

#[test]
fn pagination_sorting_and_filters() {
    let s = api();
    let mut ids = Vec::new();
    for (i, name) in ["e", "a", "d", "b", "c"].iter().enumerate() {
        let distro = if i % 2 == 0 {
            "distro=debian"
        } else {
            "distro=ubuntu"
        };
        let r = glance_at(
            s.port(),
            &["add", &format!("name={name}"), "is_public=true", distro],
            In::Bytes(&vec![b'x'; i + 1]),
        );
        ids.push(added_id(r.ok()));
    }
    let names = |r: &Run| -> Vec<String> {
        r.stdout
            .lines()
            .skip(2)
            .map(|l| l[37..67].trim().to_string())
            .collect()
    };
    // Without a terminal every page is fetched; the header is printed once.
    let r = glance(&s, &["index", "--limit", "2"]);
    assert_eq!(names(r.ok()), ["c", "b", "d", "a", "e"]);
    assert_eq!(r.stdout.matches("Container Format").count(), 1);
    let r = glance(
        &s,
        &[
            "index",
            "--limit",
            "2",
            "--sort_key",
            "name",
            "--sort_dir",
            "asc",
        ],
    );
    assert_eq!(names(r.ok()), ["a", "b", "c", "d", "e"]);
    let r = glance(&s, &["index", "--limit", "2", "--marker", &ids[2]]);
    assert_eq!(names(r.ok()), ["a", "e"]);
    let r = glance(
        &s,
        &[
            "index",
            "distro=debian",
            "--sort_key",
            "name",
            "--sort_dir",
            "asc",
        ],
    );
    assert_eq!(names(r.ok()), ["c", "d", "e"]);
    let r = glance(&s, &["index", "property-distro=ubuntu"]);
    assert_eq!(names(r.ok()), ["b", "a"]);
    let r = glance(&s, &["index", "size_min=2", "size_max=3"]);
    assert_eq!(names(r.ok()), ["d", "a"]);
    let r = glance(&s, &["index", "name=d"]);
    assert_eq!(names(r.ok()), ["d"]);
    let r = glance(
        &s,
        &[
            "details",
            "--limit",
            "2",
            "--sort_key",
            "name",
            "--sort_dir",
            "asc",
        ],
    );
    let got: Vec<String> = r
        .ok()
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Name: ").map(str::to_string))
        .collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
    let r = glance(&s, &["index", "--marker", "no-such-image"]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn clear_and_dry_runs() {
    let s = api();
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let r = glance(&s, &["add", &format!("name={name}"), "is_public=true"]);
        ids.push(added_id(r.ok()));
    }
    let r = glance(&s, &["clear"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("Not deleting any images"), "{r:?}");

    let r = glance(&s, &["clear", "--dry-run"]);
    let out = &r.ok().stdout;
    assert!(out.starts_with("Dry run. We would have done the following:\n"));
    for id in &ids {
        assert!(out.contains(&format!("Delete image {id} ")), "{out}");
    }
    let r = glance(
        &s,
        &["add", "--dry-run", "name=dry", "distro=x", "min_ram=5"],
    );
    assert_eq!(
        r.ok().stdout,
        format!(
            "Dry run. We would have done the following:\nAdd new image with metadata:\n\
             {}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            format_args!(" {:>30} => ovf", "container_format"),
            format_args!(" {:>30} => raw", "disk_format"),
            format_args!(" {:>30} => False", "is_public"),
            format_args!(" {:>30} => 0", "min_disk"),
            format_args!(" {:>30} => 5", "min_ram"),
            format_args!(" {:>30} => dry", "name"),
            format_args!(" {:>30} => {{'distro': 'x'}}", "properties"),
        )
    );
    let r = glance(&s, &["update", "--dry-run", &ids[0], "name=new"]);
    assert!(r.ok().stdout.contains("Update existing image"), "{r:?}");
    let r = glance(&s, &["delete", "--dry-run", &ids[0]]);
    assert!(
        r.ok()
            .stdout
            .ends_with(&format!("Delete image {}\n", ids[0]))
    );
    let r = glance(&s, &["member-delete", "--dry-run", &ids[0], "t"]);
    assert!(r.ok().stdout.contains(&format!(
        "Remove \"t\" from the member list of image \"{}\"",
        ids[0]
    )));
    let r = glance(
        &s,
        &["members-replace", "--dry-run", "--can-share", &ids[0], "t"],
    );
    assert!(
        r.ok()
            .stdout
            .contains("New member would have been able to further share image.")
    );
    let r = glance(&s, &["member-add", "--dry-run", &ids[0], "t"]);
    r.ok();
    // Nothing changed.
    assert_eq!(glance(&s, &["index"]).ok().stdout.lines().count(), 5);

    let r = glance(&s, &["-v", "clear", "--force"]);
    let out = &r.ok().stdout;
    for id in &ids {
        assert!(out.contains(&format!("Deleting image {id} \"")), "{out}");
    }
    assert_eq!(out.matches("... done").count(), 3);
    assert_eq!(glance(&s, &["index"]).ok().stdout, "");
}

#[test]
fn members_commands() {
    let s = api();
    let a = ["--tenant", "A"];
    let r = glance(&s, &[&a[..], &["add", "name=shared"]].concat());
    let id = added_id(r.ok());
    // No tenant: the server refuses (401).
    let r = glance(&s, &["member-add", &id, "B"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("glance: Not authorized to add image member"),
        "{r:?}"
    );

    glance(&s, &[&a[..], &["member-add", &id, "B"]].concat()).ok();
    glance(
        &s,
        &[&a[..], &["member-add", &id, "C", "--can-share"]].concat(),
    )
    .ok();
    let r = glance(&s, &[&a[..], &["image-members", &id]].concat());
    assert_eq!(r.ok().stdout, "B\nC *\n\n(*: Can share image)\n");
    let r = glance(&s, &["member-images", "C"]);
    assert_eq!(r.ok().stdout, format!("{id} *\n\n(*: Can share image)\n"));
    assert_eq!(glance(&s, &["member-images", "nobody"]).ok().stdout, "");

    // B may not share: the server answers 404.
    let r = glance(&s, &["--tenant", "B", "member-add", &id, "D"]);
    assert_eq!(r.code, 3, "{r:?}");

    glance(&s, &[&a[..], &["member-delete", &id, "B"]].concat()).ok();
    let r = glance(&s, &[&a[..], &["image-members", &id]].concat());
    assert_eq!(r.ok().stdout, "C *\n\n(*: Can share image)\n");
    glance(&s, &[&a[..], &["members-replace", &id, "E"]].concat()).ok();
    let r = glance(&s, &[&a[..], &["image-members", &id]].concat());
    assert_eq!(r.ok().stdout, "E\n");
    // Re-adding without --can-share takes the right away (as Diablo's client did).
    glance(
        &s,
        &[&a[..], &["member-add", &id, "E", "--can-share"]].concat(),
    )
    .ok();
    glance(&s, &[&a[..], &["member-add", &id, "E"]].concat()).ok();
    let r = glance(&s, &[&a[..], &["image-members", &id]].concat());
    assert_eq!(r.ok().stdout, "E\n");
    let r = glance(
        &s,
        &[&a[..], &["member-add", "no-such-image", "E"]].concat(),
    );
    assert_eq!(r.code, 3, "{r:?}");
}

// --- prompts on a pseudo-terminal --------------------------------------------------------------

/// Runs a shell command line under `script` (a pseudo-terminal for stdin, stdout and
/// stderr), feeding `input`; `None` when `script` is not available.
fn on_tty(cmdline: &str, input: &str) -> Option<Run> {
    let mut child = common::without_login(&mut Command::new("script"))
        .args(["-q", "-e", "-c", cmdline, "/dev/null"])
        .env_remove("GLANCE_HOST")
        .env_remove("GLANCE_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take();
    let input = input.to_string();
    std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // Give the program time to ask before answering.
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _ = s.write_all(input.as_bytes());
            std::thread::sleep(std::time::Duration::from_millis(2000));
        }
    });
    let out = child.wait_with_output().ok()?;
    Some(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn has_script() -> bool {
    let found = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: `script` (util-linux) is not installed");
    }
    found
}

fn glance_line(port: u16, args: &str) -> String {
    format!(
        "'{}' -H 127.0.0.1 -p {port} {args}",
        env!("CARGO_BIN_EXE_glance")
    )
}

#[test]
fn confirmation_prompts_on_a_terminal() {
    if !has_script() {
        return;
    }
    let s = api();
    let id = added_id(glance(&s, &["add", "name=victim", "is_public=true"]).ok());
    let Some(r) = on_tty(&glance_line(s.port(), &format!("delete {id}")), "n\n") else {
        return;
    };
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(&format!("Delete image {id}? [y/N] ")),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("glance: Not deleting image {id}")),
        "{r:?}"
    );
    glance(&s, &["show", &id]).ok();

    let r = on_tty(&glance_line(s.port(), &format!("delete {id}")), "y\n");
    let r = r.unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("Deleted image {id}")), "{r:?}");
    assert_eq!(glance(&s, &["show", &id]).code, 3);

    glance(&s, &["add", "name=x", "is_public=true"]).ok();
    let r = on_tty(&glance_line(s.port(), "clear"), "\n");
    let r = r.unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("Delete all images? [y/N] "), "{r:?}");
    assert!(r.stdout.contains("Not deleting any images"), "{r:?}");
    let r = on_tty(&glance_line(s.port(), "clear"), "yes\n");
    assert_eq!(r.map(|r| r.code), Some(0));
    assert_eq!(glance(&s, &["index"]).ok().stdout, "");
}

#[test]
fn paging_prompt_on_a_terminal() {
    if !has_script() {
        return;
    }
    let s = api();
    for name in ["p1", "p2", "p3"] {
        glance(&s, &["add", &format!("name={name}"), "is_public=true"]).ok();
    }
    let line = glance_line(s.port(), "index --limit 2");
    let r = on_tty(&line, "n\n").unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Fetch next page? [Y/n] "), "{r:?}");
    assert!(r.stdout.contains("p3") && r.stdout.contains("p2"), "{r:?}");
    assert!(!r.stdout.contains("p1"), "{r:?}");
    let r = on_tty(&line, "\n").unwrap_or_else(|| panic!("script"));
    assert!(r.stdout.contains("p1"), "{r:?}");
    // --force: no prompt.
    let r = on_tty(&glance_line(s.port(), "index --limit 2 -f"), "")
        .unwrap_or_else(|| panic!("script"));
    assert!(
        !r.stdout.contains("Fetch next page?") && r.stdout.contains("p1"),
        "{r:?}"
    );
}

/// The last frame a `--progress` run drew (the text after the last `\r` of `out`).
fn last_frame(out: &str) -> &str {
    out.rsplit('\r')
        .next()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
}

/// `--progress` draws on stderr when it is a terminal, ending at 100%; never on stdout (a
/// download redirected under the terminal is the image's bytes alone), never without the
/// option, never on a stderr that is not a terminal.
#[test]
fn progress_only_with_the_option_and_on_a_terminal() {
    if !has_script() {
        return;
    }
    let s = api();
    let dir = common::tempdir();
    let p = dir.path().join("img");
    let sum = generate(&p, 3 * 1024 * 1024);
    let add = |extra: &str| {
        let line = glance_line(
            s.port(),
            &format!(
                "add name=bar is_public=true --file '{}' {extra}",
                p.display()
            ),
        );
        on_tty(&line, "").unwrap_or_else(|| panic!("script"))
    };
    // Without --progress (the default): nothing progress-like.
    let r = add("");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Added new image with ID: "), "{r:?}");
    for needle in ["\r", "%", "MiB", "ETA"] {
        assert!(!r.stdout.contains(needle), "{needle:?} in {r:?}");
    }
    // With it: frames redrawn in place, the last at 100%, then the result.
    let r = add("--progress");
    assert_eq!(r.code, 0, "{r:?}");
    let frame = last_frame(&r.stdout);
    assert!(
        frame.starts_with("[================] 100%    3.0 MiB / 3.0 MiB ")
            && frame.contains("iB/s  in 0:0"), // MiB/s, or GiB/s on a fast machine
        "{frame:?} in {r:?}"
    );
    let id = added_id(&r);

    // A download to a redirected stdout: the frames on the terminal, the file exact.
    let out = dir.path().join("out");
    let line = glance_line(
        s.port(),
        &format!("download {id} --progress > '{}'", out.display()),
    );
    let r = on_tty(&line, "").unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        last_frame(&r.stdout).starts_with("[================] 100%    3.0 MiB / 3.0 MiB "),
        "{r:?}"
    );
    assert_eq!(md5_file(&out), sum);
    let data = std::fs::read(&p).unwrap_or_default();
    assert_eq!(
        std::fs::read(&out).unwrap_or_default(),
        data,
        "stdout is the image alone"
    );
    // Without --progress the terminal stays silent.
    let line = glance_line(s.port(), &format!("download {id} > '{}'", out.display()));
    let r = on_tty(&line, "").unwrap_or_else(|| panic!("script"));
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{r:?}");

    // Data of unknown size (a pipe): bytes and rate, no percent.
    let line = format!(
        "cat '{}' | {}",
        p.display(),
        glance_line(s.port(), "add name=piped is_public=true --progress")
    );
    let r = on_tty(&line, "").unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 0, "{r:?}");
    let frame = last_frame(&r.stdout);
    assert!(
        frame.starts_with("   3.0 MiB ") && frame.contains(" in 0:0") && !frame.contains('%'),
        "{frame:?} in {r:?}"
    );

    // update --file into a reserved image.
    let queued = added_id(glance(&s, &["add", "name=later", "is_public=true"]).ok());
    let line = glance_line(
        s.port(),
        &format!("update {queued} --file '{}' --progress", p.display()),
    );
    let r = on_tty(&line, "").unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        last_frame(&r.stdout).contains("] 100%    3.0 MiB / 3.0 MiB"),
        "{r:?}"
    );

    // stderr not a terminal: nothing, even with --progress (as python-glanceclient).
    let r = glance_at(
        s.port(),
        &[
            "add",
            "name=quiet",
            "--file",
            p.to_str().unwrap_or(""),
            "--progress",
        ],
        In::Null,
    );
    assert_eq!(r.ok().stderr, "");
    let f = File::create(&out).unwrap_or_else(|e| panic!("{e}"));
    let done = base_command(s.port())
        .args(["download", &id, "--progress"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(done.status.success(), "{done:?}");
    assert_eq!(String::from_utf8_lossy(&done.stderr), "");
    assert_eq!(md5_file(&out), sum);

    // Downloading to the terminal is refused.
    let r = on_tty(
        &glance_line(s.port(), &format!("download {id} --progress")),
        "",
    )
    .unwrap_or_else(|| panic!("script"));
    assert_eq!(r.code, 2, "{r:?}");
}

// --- the man page ---------------------------------------------------------------------------

fn man_page() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/glance.1");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn man_page_covers_every_option_command_variable_and_exit_code() {
    let (_, text) = man_page();
    for o in glance_rs::cli::OPTIONS {
        let roff = format!("\\-\\-{}", o.long.replace('-', "\\-"));
        assert!(text.contains(&roff), "option --{} missing ({roff})", o.long);
        if !o.short.is_empty() {
            assert!(
                text.contains(&format!("\\-{}", o.short)),
                "option -{} missing",
                o.short
            );
        }
    }
    for c in glance_rs::cli::COMMANDS {
        let roff = format!(".B {}", c.name.replace('-', "\\-"));
        assert!(
            text.contains(&roff) || text.contains(&format!(".BR {}", c.name.replace('-', "\\-"))),
            "command {} missing",
            c.name
        );
    }
    for v in ["GLANCE_HOST", "GLANCE_PORT", "OS_AUTH_TOKEN"] {
        assert!(text.contains(v), "{v} missing");
    }
    for code in ["0", "1", "2", "3"] {
        assert!(
            text.contains(&format!(".B {code}\n")),
            "exit status {code} missing"
        );
    }
    assert!(text.contains(".SH EXAMPLES"));
}

#[test]
fn man_page_renders_without_warnings() {
    let (path, _) = man_page();
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: `man` is not installed");
        return;
    };
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "man warnings");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("glance"), "{text}");
}
