//! `glance-manage`, `glance-scrubber` and server start-up errors, run as real processes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Client, EMBEDDED_API_CONF, REGISTRY_CONF, Server, bin, tempdir, write_config};
use glance_rs::auth::{AuthOptions, Context};
use glance_rs::image::{ImageId, ImagePatch, Status};
use glance_rs::registry::Registry;
use glance_rs::registry::db::{DbOptions, SqlRegistry};

fn run(program: &str, args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(bin(program))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn db_version_and_sync() {
    let dir = tempdir();
    let conf = write_config(dir.path(), "glance-registry", REGISTRY_CONF);
    let conf = conf.to_string_lossy().into_owned();

    // No database yet.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "db_version"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("glance-manage: ERROR: "),
        "{}",
        text(&out.stderr)
    );

    // version_control creates an empty, versioned database.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "version_control"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "db_version"],
        dir.path(),
    );
    assert_eq!(text(&out.stdout).trim(), "0");

    // db_sync to 1, then to the latest.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "db_sync", "1"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("from schema version 0 to 1"));
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "upgrade"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "db_version"],
        dir.path(),
    );
    let latest: u32 = text(&out.stdout).trim().parse().unwrap_or(0);
    assert!(latest >= 2, "latest schema {latest}");
    // Idempotent.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "db_sync"],
        dir.path(),
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("is at schema version {latest}")));

    // Errors: already versioned, bad versions, downgrade, unknown command, no command.
    for (args, needle) in [
        (vec!["version_control"], "already under migration control"),
        (vec!["db_sync", "99"], "99"),
        (vec!["db_sync", "x"], "not a schema version"),
        (vec!["downgrade"], "downgrade requires a version argument"),
        (vec!["downgrade", "1"], "not supported"),
        (vec!["frobnicate"], "unrecognized command 'frobnicate'"),
        (vec![], "no command"),
    ] {
        let mut full = vec!["--config-file", conf.as_str()];
        full.extend(args.iter().copied());
        let out = run("glance-manage", &full, dir.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    // --sql-connection overrides the file.
    let other = dir.path().join("other.sqlite");
    let url = format!("sqlite:///{}", other.display());
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "--sql-connection", &url, "db_sync"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(other.exists());
    let out = run(
        "glance-manage",
        &[
            "--config-file",
            &conf,
            "--sql-connection",
            "postgresql://u:pw@h/db",
            "db_version",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains("pw@"), "{}", text(&out.stderr));
}

#[test]
fn servers_explain_missing_and_bad_configs() {
    let dir = tempdir();
    // No config anywhere: the error names the paths tried.
    let out = run("glance-registry", &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("glance-registry.conf"), "{err}");
    assert!(err.contains("/etc/glance"), "{err}");

    // A bad value names file, line and option.
    let conf = write_config(
        dir.path(),
        "glance-registry",
        "[DEFAULT]\nbind_port = abc\n",
    );
    let out = run(
        "glance-registry",
        &["--config-file", &conf.to_string_lossy()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("glance-registry.conf:2") && err.contains("bind_port"),
        "{err}"
    );

    // A config given as the first argument works; --help and --version answer.
    let out = run("glance-api", &["--help"], dir.path());
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--config-file"));
    let out = run("glance-api", &["--version"], dir.path());
    assert!(text(&out.stdout).starts_with("glance-api "));
    let out = run("glance-api", &["--bogus"], dir.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn unknown_options_are_warned_not_fatal() {
    let s = Server::start(
        "glance-registry",
        &format!(
            "{REGISTRY_CONF}no_such_option = 1\n[pipeline:glance-registry]\npipeline = context registryapp\n"
        ),
        true,
    );
    let c = Client::new(&s.base);
    assert_status!(c.get("/images"), 200);
}

/// The embedded-registry layout: glance-manage reads glance-api.conf (the shipped sample,
/// with its stores filled in) and keeps quiet about the API's options; a misspelled option is
/// still reported, once.
#[test]
fn manage_reads_a_glance_api_conf_without_warnings() {
    let dir = tempdir();
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/glance-api.conf"))
            .unwrap_or_else(|e| panic!("etc/glance-api.conf: {e}"));
    let db = dir.path().join("glance.sqlite");
    let mut conf = String::new();
    for line in sample.lines() {
        let line = match line
            .split_once(" = ")
            .map(|(k, _)| k.trim_start_matches('#').trim())
        {
            Some("sql_connection") => format!("sql_connection = sqlite:///{}", db.display()),
            Some("filesystem_store_datadir") => {
                format!("filesystem_store_datadir = {}/images", dir.path().display())
            }
            Some(
                "swift_store_auth_address"
                | "swift_store_user"
                | "swift_store_key"
                | "s3_store_host"
                | "s3_store_access_key"
                | "s3_store_secret_key"
                | "s3_store_bucket"
                | "registry_host",
            ) => line.trim_start_matches('#').trim_start().to_string(),
            _ => line.to_string(),
        };
        conf.push_str(&line);
        conf.push('\n');
    }
    let api_conf = write_config(dir.path(), "glance-api", &conf);
    let api_conf = api_conf.to_string_lossy().into_owned();
    let manage = |args: &[&str]| {
        let mut full = vec!["--config-file", api_conf.as_str()];
        full.extend(args);
        run("glance-manage", &full, dir.path())
    };
    let out = manage(&["db_sync"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "db_sync on glance-api.conf");
    let out = manage(&["db_version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "db_version on glance-api.conf");
    assert!(text(&out.stdout).trim().parse::<u32>().is_ok_and(|v| v > 0));

    let typo = conf.replacen("[DEFAULT]\n", "[DEFAULT]\nswift_store_kye = secret\n", 1);
    write_config(dir.path(), "glance-api", &typo);
    let out = manage(&["db_version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("WARNING") && err.contains("unknown option 'swift_store_kye'"),
        "{err}"
    );
}

#[test]
fn scrubber_honours_scrub_time_and_daemon_mode() {
    let api_conf = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
sql_connection = sqlite:///{dir}/glance.sqlite
db_auto_create = True
filesystem_store_datadir = {dir}/images
delayed_delete = True
";
    let api = Server::start("glance-api", api_conf, false);
    let c = Client::new(&api.base);
    let r = c.request(
        "POST",
        "/v1/images",
        &[("Content-Type", "application/octet-stream")],
        Some(b"to be scrubbed"),
    );
    assert_status!(r, 201);
    let id = r.json()["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_status!(
        c.request("DELETE", &format!("/v1/images/{id}"), &[], None),
        200
    );
    let data = api.dir.join("images").join(&id);
    assert!(data.exists());

    // Not yet due: an hour of scrub_time keeps the data.
    let conf = write_config(
        &api.dir,
        "glance-scrubber",
        "[DEFAULT]\nsql_connection = sqlite:///{dir}/glance.sqlite\nfilesystem_store_datadir = {dir}/images\nscrub_time = 3600\n",
    );
    let conf = conf.to_string_lossy().into_owned();
    let out = run("glance-scrubber", &["--config-file", &conf], &api.dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(data.exists(), "scrub_time not honoured");

    // Daemon mode with scrub_time 0 removes it, then stops on SIGTERM.
    write_config(
        &api.dir,
        "glance-scrubber",
        "[DEFAULT]\nsql_connection = sqlite:///{dir}/glance.sqlite\nfilesystem_store_datadir = {dir}/images\nscrub_time = 0\nwakeup_time = 1\n",
    );
    let mut child = Command::new(bin("glance-scrubber"))
        .args(["--config-file", &conf, "-D"])
        .spawn()
        .unwrap_or_else(|e| panic!("scrubber: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while data.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut status = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reap the child in every case (kill is a no-op once it has exited).
    let _ = child.kill();
    let _ = child.wait();
    assert!(!data.exists(), "daemon did not scrub");
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon exit {status:?}"
    );
}

#[test]
fn sighup_rereads_logging_options_and_reopens_the_log() {
    let conf = format!("{REGISTRY_CONF}log_file = {{dir}}/registry.log\n");
    let s = Server::start("glance-registry", &conf, true);
    let c = Client::new(&s.base);
    let log = s.dir.join("registry.log");
    assert_status!(c.get("/images"), 200);
    // WARNING level by default: the request line (INFO) is not logged.
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!before.contains("GET /images"), "{before}");

    // logrotate moves the file; the operator turns on verbose; SIGHUP.
    std::fs::rename(&log, s.dir.join("registry.log.1")).ok();
    write_config(
        &s.dir,
        "glance-registry",
        &format!("{conf}verbose = True\n"),
    );
    let pid = s.pid().unwrap_or(0).to_string();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = String::new();
    while Instant::now() < deadline {
        assert_status!(c.get("/images"), 200);
        after = std::fs::read_to_string(&log).unwrap_or_default();
        if after.contains("GET /images") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(after.contains("GET /images"), "new log file: {after}");
    assert!(after.contains("re-read"), "{after}");
}

/// Registers an image straight in the database, as images were stored before uploads were
/// inspected: `active`, with a `file://` location in `<dir>/images` (the data is whatever
/// the caller put there, or nothing).
fn register(reg: &SqlRegistry, dir: &Path, id: &str, disk_format: &str) -> PathBuf {
    let data = dir.join("images").join(id);
    let patch = ImagePatch {
        id: Some(id.into()),
        name: Some(Some(format!("old {id}"))),
        disk_format: Some(Some(disk_format.into())),
        container_format: Some(Some("bare".into())),
        status: Some(Status::Active),
        location: Some(Some(format!("file://{}", data.display()))),
        ..ImagePatch::default()
    };
    reg.create(&Context::noauth_admin(&AuthOptions::default()), &patch)
        .unwrap_or_else(|e| panic!("registering {id}: {e}"));
    // created_at orders `inspect --all`: keep the registration order.
    std::thread::sleep(Duration::from_millis(5));
    data
}

/// `qemu-img create -q -f qcow2 [extra...] path 64M`.
fn qemu_img_create(qemu_img: &Path, path: &Path, extra: &[&str]) {
    let out = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .args(extra)
        .arg(path)
        .arg("64M")
        .output()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    assert!(out.status.success(), "qemu-img: {}", text(&out.stderr));
}

/// The report line of `id` in `inspect` output: its four columns (the verdict whole).
fn report_of<'a>(stdout: &'a str, id: &str) -> (&'a str, &'a str, &'a str) {
    let line = stdout
        .lines()
        .find(|l| l.split(' ').next() == Some(id))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{stdout}"));
    // The fixed columns: id 36, format 8, virtual size 20 (right-aligned).
    assert_eq!(&line[36..37], " ", "{line}");
    let format = line[37..45].trim_end();
    let size = line[46..66].trim_start();
    let verdict = &line[67..];
    (format, size, verdict)
}

#[test]
fn inspect_checks_images_stored_before_inspection() {
    let dir = tempdir();
    let dir = dir.path();
    let conf = write_config(dir, "glance-api", EMBEDDED_API_CONF);
    let conf = conf.to_string_lossy().into_owned();
    std::fs::create_dir_all(dir.join("images")).unwrap_or_else(|e| panic!("datadir: {e}"));
    let reg = SqlRegistry::open(
        &glance_rs::registry::sql::DbUrl::Sqlite(dir.join("api.sqlite")),
        DbOptions::default(),
    )
    .unwrap_or_else(|e| panic!("registry: {e}"));

    // Ids of 36 characters, like the UUIDs glance-api gives, named after what they hold.
    let id = |name: &str| format!("{name:-<36}");
    let raw = id("raw-ok");
    std::fs::write(register(&reg, dir, &raw, "raw"), vec![0u8; 1 << 20])
        .unwrap_or_else(|e| panic!("{e}"));
    let missing = id("missing");
    register(&reg, dir, &missing, "raw");

    let qemu_img = common::images::tool("qemu-img");
    let (qcow2, backing, mismatch) = (id("qcow2-ok"), id("qcow2-backing"), id("qcow2-as-raw"));
    match &qemu_img {
        Some(q) => {
            qemu_img_create(q, &register(&reg, dir, &qcow2, "qcow2"), &[]);
            qemu_img_create(
                q,
                &register(&reg, dir, &backing, "qcow2"),
                &["-u", "-b", "/etc/passwd", "-F", "raw"],
            );
            qemu_img_create(q, &register(&reg, dir, &mismatch, "raw"), &[]);
        }
        None => {
            let required = std::env::var("GLANCE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "qemu-img (Debian package qemu-utils) is required \
                 (GLANCE_TEST_REQUIRE_SERVICES=1) but missing"
            );
            eprintln!(
                "SKIPPED the qcow2 part of inspect_checks_images_stored_before_inspection: \
                 qemu-img (Debian package qemu-utils) is missing"
            );
        }
    }
    // Not inspected by --all: a deleted image (its data still there) and a queued one.
    let deleted = id("deleted");
    std::fs::write(register(&reg, dir, &deleted, "raw"), b"gone").unwrap_or_else(|e| panic!("{e}"));
    let admin = Context::noauth_admin(&AuthOptions::default());
    let deleted_id = ImageId::parse(&deleted).unwrap_or_else(|e| panic!("{e}"));
    reg.delete(&admin, &deleted_id)
        .unwrap_or_else(|e| panic!("{e}"));
    let queued = id("queued");
    reg.create(
        &admin,
        &ImagePatch {
            id: Some(queued.clone()),
            status: Some(Status::Queued),
            ..ImagePatch::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(reg);

    // --all: one line per stored image in registration order, then the summary; exit 1.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "inspect", "--all"],
        dir,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        report_of(&stdout, &raw),
        ("raw", "1048576", "ok"),
        "{stdout}"
    );
    let (format, size, verdict) = report_of(&stdout, &missing);
    assert_eq!((format, size), ("-", "-"), "{stdout}");
    assert!(
        verdict.starts_with("error: ") && verdict.contains("not found"),
        "{stdout}"
    );
    let mut expected = vec![raw.as_str(), missing.as_str()];
    let qcow2_expected = if qemu_img.is_some() {
        assert_eq!(
            report_of(&stdout, &qcow2),
            ("qcow2", "67108864", "ok"),
            "{stdout}"
        );
        let (format, size, verdict) = report_of(&stdout, &backing);
        assert_eq!((format, size), ("qcow2", "-"), "{stdout}");
        assert!(verdict.starts_with("UNSAFE: backing file: "), "{stdout}");
        let (format, size, verdict) = report_of(&stdout, &mismatch);
        assert_eq!((format, size), ("qcow2", "-"), "{stdout}");
        assert!(verdict.starts_with("UNSAFE: format mismatch: "), "{stdout}");
        expected.extend([qcow2.as_str(), backing.as_str(), mismatch.as_str()]);
        "inspected 5 images: 2 ok, 2 unsafe, 1 errors"
    } else {
        "inspected 2 images: 1 ok, 0 unsafe, 1 errors"
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let listed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split(' ').next())
        .take(lines.len().saturating_sub(1))
        .collect();
    assert_eq!(listed, expected, "{stdout}");
    assert_eq!(lines.last().copied(), Some(qcow2_expected), "{stdout}");
    // Nothing changed: the data is all still there.
    assert!(dir.join("images").join(&deleted).exists());

    // One safe image: exit 0.
    let out = run(
        "glance-manage",
        &["--config-file", &conf, "inspect", &raw],
        dir,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(report_of(&stdout, &raw), ("raw", "1048576", "ok"));
    assert!(
        stdout.ends_with("inspected 1 images: 1 ok, 0 unsafe, 0 errors\n"),
        "{stdout}"
    );

    // Named images that cannot be inspected are error lines, and fail the run.
    let unknown = id("unknown");
    let out = run(
        "glance-manage",
        &[
            "--config-file",
            &conf,
            "inspect",
            &raw,
            &unknown,
            &deleted,
            &queued,
        ],
        dir,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        report_of(&stdout, &unknown),
        ("-", "-", "error: no such image")
    );
    assert_eq!(
        report_of(&stdout, &deleted),
        ("-", "-", "error: image is deleted")
    );
    assert_eq!(
        report_of(&stdout, &queued),
        ("-", "-", "error: image has no stored data (status queued)")
    );
    assert!(
        stdout.ends_with("inspected 4 images: 1 ok, 0 unsafe, 3 errors\n"),
        "{stdout}"
    );

    // Usage errors, and the database commands refuse --all.
    for (args, needle) in [
        (vec!["inspect"], "inspect needs image ids or --all"),
        (vec!["inspect", "--all", &raw], "not both"),
        (
            vec!["db_version", "--all"],
            "--all is an option of the inspect command",
        ),
    ] {
        let mut full = vec!["--config-file", conf.as_str()];
        full.extend(args.iter().copied());
        let out = run("glance-manage", &full, dir);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("glance-manage: ERROR: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }

    // With a remote registry, glance-api.conf names no database: --sql-connection must.
    let remote = write_config(
        dir,
        "remote-api",
        &format!("{EMBEDDED_API_CONF}registry_host = 127.0.0.1\n"),
    );
    let out = run(
        "glance-manage",
        &[
            "--config-file",
            &remote.to_string_lossy(),
            "inspect",
            "--all",
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("registry_host") && err.contains("--sql-connection"),
        "{err}"
    );

    // --sql-connection names another database (here: an empty one, so nothing to inspect).
    let other = dir.join("other.sqlite");
    drop(
        SqlRegistry::open(
            &glance_rs::registry::sql::DbUrl::Sqlite(other.clone()),
            DbOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let url = format!("sqlite:///{}", other.display());
    let out = run(
        "glance-manage",
        &[
            "--config-file",
            &conf,
            "--sql-connection",
            &url,
            "inspect",
            "--all",
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "inspected 0 images: 0 ok, 0 unsafe, 0 errors\n"
    );

    // The help lists the command.
    let out = run("glance-manage", &["--help"], dir);
    let help = text(&out.stdout);
    assert!(
        help.contains("inspect ID...") && help.contains("--all"),
        "{help}"
    );
}

/// `glance-manage db_copy`: an embedded SQLite registry moved into another database through
/// the real program; its refusals (no source, a bad URL, a target holding images).
#[test]
fn db_copy_moves_a_registry() {
    let dir = tempdir();
    let d = dir.path();
    let old = d.join("old.sqlite");
    let src = SqlRegistry::open(
        &glance_rs::registry::sql::DbUrl::Sqlite(old.clone()),
        DbOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context::noauth_admin(&AuthOptions::default());
    for i in 0..30 {
        let p = ImagePatch {
            name: Some(Some(format!("image-{i}"))),
            ..ImagePatch::default()
        };
        src.create(&ctx, &p).unwrap_or_else(|e| panic!("{e}"));
    }
    drop(src);
    let conf = write_config(d, "glance-registry", REGISTRY_CONF);
    let conf = conf.to_string_lossy().into_owned();
    let old_url = format!("sqlite:///{}", old.display());
    let copy = |source: &str| {
        run(
            "glance-manage",
            &["--config-file", &conf, "db_copy", source],
            d,
        )
    };

    let out = copy(&old_url);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("into") && said.contains("30 images, 0 image_properties"),
        "{said}"
    );
    let out = run("glance-manage", &["--config-file", &conf, "db_version"], d);
    assert_eq!(
        text(&out.stdout).trim(),
        glance_rs::registry::migrate::LATEST.to_string()
    );

    // Again: the target holds images now.
    let out = copy(&old_url);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds images"),
        "{}",
        text(&out.stderr)
    );
    // A missing source, a database we do not speak, no argument: clear errors, exit 1.
    let missing = format!("sqlite:///{}", d.join("nope.sqlite").display());
    let out = copy(&missing);
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = copy("oracle://scott:tiger@db/orcl");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("db_copy source") && !err.contains("tiger"),
        "{err}"
    );
    let out = run("glance-manage", &["--config-file", &conf, "db_copy"], d);
    assert!(text(&out.stderr).contains("needs the source database URL"));
}
