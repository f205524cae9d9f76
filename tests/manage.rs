//! `glance-manage`, `glance-scrubber` and server start-up errors, run as real processes.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Client, REGISTRY_CONF, Server, bin, tempdir, write_config};

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
