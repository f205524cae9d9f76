//! Logging set-up for the servers: Glance's line format on stderr or in a log file.
//!
//! Lines look like Glance's `%(asctime)s %(levelname)8s [%(name)s] %(message)s`:
//! `2011-09-21 20:33:05     INFO [glance::http] message`, with the date written from
//! `log_date_format` (UTC; `%Y %m %d %H %M %S %y %%` understood, anything else copied). The
//! level is WARNING by default, INFO with `verbose`, DEBUG with `debug`; `RUST_LOG`, when set,
//! overrides that with env_logger's filter syntax.
//!
//! A log file is opened in append mode behind a shared handle, so that `SIGHUP` after
//! logrotate can call [`LogHandle::reopen`] and the next line goes to the new file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter};

use crate::config::CommonOptions;
use crate::error::{Error, Result};

/// What [`init`] returns: the means to reopen the log file.
#[derive(Debug, Clone)]
pub struct LogHandle {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
    installed: bool,
}

impl LogHandle {
    /// The log file, or `None` when logging to stderr.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Whether this call installed the process's logger (false when one was already
    /// installed, as in tests: the handle's file then receives nothing).
    pub fn is_installed(&self) -> bool {
        self.installed
    }

    /// Applies re-read logging options (SIGHUP): the level from `verbose`/`debug` (unless
    /// `RUST_LOG` rules) and a reopened log file. A changed `log_file` path needs a restart.
    pub fn apply(&self, common: &CommonOptions) -> Result<()> {
        if self.installed && rust_log().is_none() {
            log::set_max_level(level_of(common));
        }
        if common.log_path().as_deref() != self.path() {
            log::warn!("log_file/log_dir changed: the new path takes effect on restart");
        }
        self.reopen()
    }

    /// Reopens the log file at its path (after logrotate moved it); a no-op for stderr.
    pub fn reopen(&self) -> Result<()> {
        if let Some((path, shared)) = &self.file {
            let fresh = open_log(path)?;
            *lock(shared) = fresh;
        }
        Ok(())
    }
}

/// Locks the file even if a panicking thread poisoned the lock (a log line half-written is
/// better than no more logging).
fn lock(m: &Mutex<File>) -> MutexGuard<'_, File> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_log(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Config(format!("cannot open log file {}: {e}", path.display())))
}

/// The writer env_logger sees: every record is written whole under the lock.
struct SharedFile(Arc<Mutex<File>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).flush()
    }
}

/// Installs the logger for `program` (its own log target, e.g. `glance_api`, is shown as
/// `glance-api`). A log file that cannot be opened is an error naming it; its directory is
/// not created. When a logger is already installed (a second call, tests) the new one is
/// dropped and `Ok` returned.
pub fn init(common: &CommonOptions, program: &str) -> Result<LogHandle> {
    let mut builder = env_logger::Builder::new();
    let rust_log = rust_log();
    match &rust_log {
        Some(spec) => {
            builder.parse_filters(spec);
        }
        // The filter admits everything up to DEBUG; the effective level is the global max
        // level, which SIGHUP can change (see `LogHandle::apply`).
        None => {
            builder.filter_level(LevelFilter::Debug);
            // rust-s3 warns "Retrying ..." about every failed request (a 404 included) and
            // its HTTP client chatters at debug: the S3 store reports what matters itself.
            builder.filter_module("s3", LevelFilter::Error);
            builder.filter_module("attohttpc", LevelFilter::Warn);
        }
    }
    let date_format = DateFormat::parse(&common.log_date_format);
    let program_target = program.replace('-', "_");
    let program = program.to_string();
    builder.format(move |out, record| {
        let target = display_target(record.target(), &program_target, &program);
        writeln!(
            out,
            "{} {:>8} [{}] {}",
            date_format.render(SystemTime::now()),
            level_name(record.level()),
            target,
            record.args()
        )
    });
    let file = match common.log_path() {
        Some(path) => {
            let shared = Arc::new(Mutex::new(open_log(&path)?));
            builder.target(env_logger::Target::Pipe(Box::new(SharedFile(
                shared.clone(),
            ))));
            Some((path, shared))
        }
        None => {
            builder.target(env_logger::Target::Stderr);
            None
        }
    };
    let installed = builder.try_init().is_ok();
    if installed && rust_log.is_none() {
        log::set_max_level(level_of(common));
    }
    Ok(LogHandle { file, installed })
}

/// `RUST_LOG`, when set to something.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// WARNING by default, INFO with `verbose`, DEBUG with `debug`.
fn level_of(common: &CommonOptions) -> LevelFilter {
    if common.debug {
        LevelFilter::Debug
    } else if common.verbose {
        LevelFilter::Info
    } else {
        LevelFilter::Warn
    }
}

/// [`init`], then logs the config's `warnings` (unknown options and the like) now that
/// logging is up.
pub fn init_with_warnings(
    common: &CommonOptions,
    program: &str,
    warnings: &[String],
) -> Result<LogHandle> {
    let handle = init(common, program)?;
    for w in warnings {
        log::warn!("{w}");
    }
    Ok(handle)
}

/// Python's level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// The logger name shown: our library's `glance_rs::x` as `glance::x` (Glance's logger
/// names started with `glance`), the program's own crate by its program name.
fn display_target(target: &str, program_target: &str, program: &str) -> String {
    if target == program_target {
        return program.to_string();
    }
    match target.strip_prefix("glance_rs") {
        Some(rest) if rest.is_empty() || rest.starts_with("::") => format!("glance{rest}"),
        _ => target.to_string(),
    }
}

/// A pre-parsed `log_date_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DateFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl DateFormat {
    fn parse(fmt: &str) -> DateFormat {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let piece = match chars.next() {
                Some('Y') => Piece::Year,
                Some('y') => Piece::Year2,
                Some('m') => Piece::Month,
                Some('d') => Piece::Day,
                Some('H') => Piece::Hour,
                Some('M') => Piece::Minute,
                Some('S') => Piece::Second,
                Some('%') => {
                    text.push('%');
                    continue;
                }
                Some(other) => {
                    text.push('%');
                    text.push(other);
                    continue;
                }
                None => {
                    text.push('%');
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        DateFormat(pieces)
    }

    fn render(&self, t: SystemTime) -> String {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        let (y, mo, d) = crate::timeutil::civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Year => out.push_str(&format!("{y:04}")),
                Piece::Year2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
                Piece::Month => out.push_str(&format!("{mo:02}")),
                Piece::Day => out.push_str(&format!("{d:02}")),
                Piece::Hour => out.push_str(&format!("{h:02}")),
                Piece::Minute => out.push_str(&format!("{mi:02}")),
                Piece::Second => out.push_str(&format!("{s:02}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
