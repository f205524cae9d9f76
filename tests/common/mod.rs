//! Test harness: start the real binaries on ephemeral ports and talk HTTP to them.
//!
//! A server gets a fresh temp dir and a config file with `bind_port = 0`; its first stdout
//! line `listening on 127.0.0.1:PORT` tells the port (never pick a "free" port in advance).
//! Dropping the handle sends SIGTERM, waits up to 5 s, then kills.

#![allow(dead_code)]

pub mod hostile;
pub mod images;
pub mod keystone;
pub mod objstore;
pub mod proxy;
pub mod sqldb;
pub mod venv;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    /// Its temp dir (config, database, images, log).
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

/// Path of one of the crate's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "glance-api" => PathBuf::from(env!("CARGO_BIN_EXE_glance-api")),
        "glance-registry" => PathBuf::from(env!("CARGO_BIN_EXE_glance-registry")),
        "glance" => PathBuf::from(env!("CARGO_BIN_EXE_glance")),
        "glance-manage" => PathBuf::from(env!("CARGO_BIN_EXE_glance-manage")),
        "glance-scrubber" => PathBuf::from(env!("CARGO_BIN_EXE_glance-scrubber")),
        other => panic!("unknown binary {other}"),
    }
}

/// A fresh temp dir.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("glance-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
}

/// Runs `glance-manage --config-file <conf> db_sync` and asserts success.
pub fn db_sync(conf: &Path) {
    let out = Command::new(bin("glance-manage"))
        .arg("--config-file")
        .arg(conf)
        .arg("db_sync")
        .output()
        .unwrap_or_else(|e| panic!("glance-manage: {e}"));
    assert!(
        out.status.success(),
        "db_sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// Writes `config` (with `{dir}` replaced by the temp dir) to `<dir>/<program>.conf`,
    /// migrates the database when `sync` is true, and starts `program`.
    pub fn start(program: &str, config: &str, sync: bool) -> Server {
        let tmp = tempdir();
        let dir = tmp.path().to_path_buf();
        let mut server = Server::start_in(program, &dir, config, sync);
        server._tmp = Some(tmp);
        server
    }

    /// Like [`Server::start`] in an existing directory (kept by the caller).
    pub fn start_in(program: &str, dir: &Path, config: &str, sync: bool) -> Server {
        let conf = write_config(dir, program, config);
        if sync {
            db_sync(&conf);
        }
        Server::spawn(program, dir, &conf)
            .unwrap_or_else(|(status, err)| panic!("{program} did not start ({status:?}): {err}"))
    }

    /// Starts `program --config-file conf`; on failure returns its exit status and stderr.
    pub fn spawn(
        program: &str,
        dir: &Path,
        conf: &Path,
    ) -> Result<Server, (Option<ExitStatus>, String)> {
        let mut child = Command::new(bin(program))
            .arg("--config-file")
            .arg(conf)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| (None, e.to_string()))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let Some(out) = stdout else { return };
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep draining so the server never blocks on stdout
        });
        let stderr = child.stderr.take();
        let (etx, erx) = mpsc::channel();
        thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut s);
            }
            let _ = etx.send(s);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let addr: SocketAddr = line
                    .strip_prefix("listening on ")
                    .and_then(|a| a.trim().parse().ok())
                    .unwrap_or_else(|| panic!("unexpected first line from {program}: {line}"));
                // Keep draining stderr in the background (the thread above owns it).
                drop(erx);
                Ok(Server {
                    child: Some(child),
                    addr,
                    dir: dir.to_path_buf(),
                    _tmp: None,
                    base: format!("http://{addr}"),
                })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let err = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                Err((status, err))
            }
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sends SIGTERM and waits for the exit status (up to 10 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// The server process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `<dir>/<program>.conf` with `{dir}` substituted and returns its path.
pub fn write_config(dir: &Path, program: &str, config: &str) -> PathBuf {
    let path = dir.join(format!("{program}.conf"));
    let text = config.replace("{dir}", &dir.display().to_string());
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing config: {e}"));
    path
}

/// A minimal glance-registry.conf on an ephemeral port with a database in `{dir}`.
pub const REGISTRY_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
sql_connection = sqlite:///{dir}/registry.sqlite
workers = 4
";

/// A complete glance-api.conf on an ephemeral port: embedded SQLite registry (migrated at
/// start-up) and the file store, both in `{dir}`; locations on 127.0.0.1 (the tests' own
/// servers) pass the location policy.
pub const EMBEDDED_API_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = 8
default_store = file
filesystem_store_datadir = {dir}/images
sql_connection = sqlite:///{dir}/api.sqlite
db_auto_create = True
location_allowed_hosts = 127.0.0.1
";

/// The registry of a glance-api under test: with `remote`, a glance-registry (its config
/// plus `registry_extra`) and the lines that point glance-api at it; else no registry and
/// the lines of an embedded SQLite registry in `{dir}`.
pub fn registry_for_api(remote: bool, registry_extra: &str) -> (Option<Server>, String) {
    if !remote {
        let line = "sql_connection = sqlite:///{dir}/api.sqlite\ndb_auto_create = True\n";
        return (None, line.to_string());
    }
    let reg = Server::start(
        "glance-registry",
        &format!("{REGISTRY_CONF}{registry_extra}"),
        true,
    );
    let line = format!(
        "registry_host = 127.0.0.1\nregistry_port = {}\n",
        reg.port()
    );
    (Some(reg), line)
}

/// Starts glance-api with [`EMBEDDED_API_CONF`].
pub fn embedded_api() -> Server {
    Server::start("glance-api", EMBEDDED_API_CONF, false)
}

/// A reply read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// An HTTP client for tests: never treats statuses as errors.
pub struct Client {
    agent: ureq::Agent,
    /// `http://host:port`.
    pub base: String,
}

impl Client {
    /// A client of `base`.
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Client {
            agent,
            base: base.to_string(),
        }
    }

    /// Sends a request with headers and an optional body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .unwrap_or_else(|e| panic!("request: {e}"));
        let mut resp = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .unwrap_or_else(|e| panic!("{method} {path} body: {e}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// Sends JSON with a method.
    pub fn json(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        let bytes = body.to_string().into_bytes();
        self.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            Some(&bytes),
        )
    }
}

/// Asserts a status, printing the body on failure.
#[macro_export]
macro_rules! assert_status {
    ($reply:expr, $status:expr) => {{
        let r = &$reply;
        assert_eq!(r.status, $status, "unexpected status; body: {}", r.text());
    }};
}

/// Waits up to `timeout` for `server` to exit on its own (after a signal the test sent) and
/// returns its exit status; kills it and returns None if it is still running then.
pub fn wait_for_exit(server: &mut Server, timeout: Duration) -> Option<ExitStatus> {
    let mut child = server.child.take()?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The environment variables that make `glance` log in to Keystone by itself (an openrc
/// or clouds.yaml); tests of the tool against a noauth server remove them, so that a
/// developer's sourced openrc, or CI's Keystone variables, change nothing.
pub const OS_LOGIN_VARS: &[&str] = &[
    "OS_AUTH_TOKEN",
    "OS_AUTH_URL",
    "OS_AUTH_TYPE",
    "OS_CLOUD",
    "OS_USERNAME",
    "OS_USER_ID",
    "OS_PASSWORD",
    "OS_PROJECT_NAME",
    "OS_PROJECT_ID",
    "OS_TENANT_NAME",
    "OS_TENANT_ID",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_IMAGE_URL",
];

/// Removes [`OS_LOGIN_VARS`] from a command's environment.
pub fn without_login(cmd: &mut Command) -> &mut Command {
    for v in OS_LOGIN_VARS {
        cmd.env_remove(v);
    }
    cmd
}
