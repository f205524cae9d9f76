//! The Python venvs of real OpenStack clients (`tests/clients/setup-venv.sh`) and how the
//! tests run their programs: a clean environment, a bounded time, output captured.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `true` when a missing service must fail the test instead of skipping it (`.ci/run`).
pub fn required() -> bool {
    std::env::var("GLANCE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// The venv named by `$var` (else `default`), or `None` (after printing why, `setup` says
/// how to make it) when it lacks the clients and the test must be skipped.
pub fn find(var: &str, default: &str, setup: &str, test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let missing: Vec<&str> = ["bin/python", "bin/glance", "bin/openstack"]
        .into_iter()
        .filter(|p| !dir.join(p).exists())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!(
        "client venv {} lacks {} (run `{setup}` and export {var})",
        dir.display(),
        missing.join(", ")
    );
    if required() {
        panic!("{why}");
    }
    // Straight to stderr, past the test harness's capture, so the reason shows in CI logs.
    let _ = writeln!(io::stderr(), "\nSKIPPED {test}: {why}");
    None
}

/// What a client program printed.
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// The run, which must have succeeded.
    pub fn ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The run, which must have failed.
    pub fn fails(self, what: &str) -> Run {
        assert!(
            !self.status.success(),
            "{what} should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// How a client program gets its standard input.
pub enum Stdin {
    /// `/dev/null`.
    Null,
    /// A pseudo-terminal, as when a person types the command. glanceclient takes any
    /// non-TTY stdin for image data (`image-update` of an active image then refuses to run),
    /// and a closed one crashes it (`sys.stdin` is `None`), so its CLI gets a TTY.
    Tty,
    /// A pipe carrying these bytes (`cat file | glance image-create …`).
    Pipe(Vec<u8>),
}

/// Gives the child a pseudo-terminal as stdin, keeping stdout and stderr as they are.
const WITH_TTY: &str = "import os, pty, subprocess, sys\n\
                        master, slave = pty.openpty()\n\
                        sys.exit(subprocess.call(sys.argv[1:], stdin=slave))";

/// How long one client invocation may take (they take 1–5 s, more on a loaded machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `$VENV/bin/<program> args…` with a clean environment (no `OS_*` of the caller, no
/// proxies) plus `env`.
pub fn run(
    venv: &Path,
    program: &str,
    args: &[&str],
    stdin: Stdin,
    env: &[(String, String)],
) -> Run {
    let exe = venv.join("bin").join(program);
    let mut cmd = if matches!(stdin, Stdin::Tty) {
        let mut c = Command::new(venv.join("bin/python"));
        c.arg("-c").arg(WITH_TTY).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if matches!(stdin, Stdin::Pipe(_)) {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("OS_") || k.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONWARNINGS", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let feeder = match (stdin, child.stdin.take()) {
        (Stdin::Pipe(bytes), Some(mut pipe)) => Some(thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let stdout = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CLIENT_TIMEOUT => {
                thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{program} {} did not finish within {CLIENT_TIMEOUT:?}",
                    args.join(" ")
                );
            }
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    eprintln!(
        "[{:.1}s] {program} {}",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Reads a pipe to its end on a thread (so that a full stderr never blocks stdout).
fn read_all(pipe: Option<Box<dyn Read + Send>>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}
