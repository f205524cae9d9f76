//! `glance-manage`: the registry database's schema (spec §12.3), and the inspection of
//! stored image data.
//!
//! `db_version` prints the schema version; `db_sync [V]` (alias `upgrade [V]`) migrates to
//! the latest (or V); `version_control` puts an empty database under version control (our
//! migrations are versioned from the start, so it is `db_sync 0`). These read
//! glance-registry.conf.
//!
//! `inspect [ID...|--all]` reads the stored data of images through the stores of
//! glance-api.conf and runs the upload's format inspection on it
//! ([`glance_rs::format::Inspector`]): images stored before an upgrade brought inspection
//! were never checked. It prints one line per image and a summary (see [`report_line`])
//! and changes no image and no record.
//!
//! Errors print `glance-manage: ERROR: <message>` and exit 1; `inspect` also exits 1 when
//! an image is unsafe or could not be read.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use glance_rs::config::{self, CliArgs};
use glance_rs::format::{Format, Inspector, OnMismatch, Rules};
use glance_rs::image::Image;
use glance_rs::registry::db;
use glance_rs::registry::db::{DbOptions, SqlRegistry};
use glance_rs::registry::migrate;
use glance_rs::registry::sql::DbUrl;
use glance_rs::store::{ImageData, Stores};
use glance_rs::{Error, Result, log as glance_log};

const PROGRAM: &str = "glance-manage";

const COMMANDS: &str = "Commands:
    db_version          print the schema version of the registry database
    db_sync [VERSION]   create or migrate the database to VERSION (default: latest)
    upgrade [VERSION]   the same as db_sync
    version_control     put a new database under version control (schema version 0)
    db_copy SOURCE_URL  copy every image record from the registry database at
                        SOURCE_URL (e.g. the old sqlite:////var/lib/glance/glance.sqlite)
                        into this one (sql_connection), which must hold no image
    downgrade VERSION   not supported: restore a backup instead
    inspect ID...       check the stored data of these images as an upload is checked
    inspect --all       the same for every image with stored data (not deleted)

The database commands read glance-registry.conf; inspect reads glance-api.conf (its
stores, and its sql_connection unless --sql-connection is given). inspect prints one
line per image, ID FORMAT VIRTUAL_SIZE VERDICT, where VERDICT is ok, warning: ...,
UNSAFE: ... or error: ..., then a summary; it changes nothing, and exits 1 when an
image is unsafe or could not be read.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{PROGRAM}: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The shared options plus glance-manage's own.
fn options() -> getopts::Options {
    let mut opts = CliArgs::options();
    opts.optopt(
        "",
        "sql-connection",
        "database URL (overrides the config file)",
        "URL",
    );
    opts.optflag(
        "",
        "all",
        "inspect: every image with stored data instead of IDs",
    );
    opts
}

fn usage() -> String {
    format!(
        "{}\n{COMMANDS}",
        options().usage(&format!("Usage: {PROGRAM} [options] COMMAND [ARGS]"))
    )
}

fn run(args: &[String]) -> Result<ExitCode> {
    let m = options()
        .parse(args)
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut cli = CliArgs::from_matches(&m);
    if cli.help {
        print!("{}", usage());
        return Ok(ExitCode::SUCCESS);
    }
    if cli.version {
        println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    let sql_connection_given = m.opt_present("sql-connection");
    if let Some(url) = m.opt_str("sql-connection") {
        cli.set("sql_connection", &url, "--sql-connection");
    }
    // The free arguments are the command, never a config path.
    let command: Vec<String> = std::mem::take(&mut cli.args);
    let Some(name) = command.first() else {
        eprint!("{}", usage());
        return Err(Error::Config("no command given".into()));
    };
    let all = m.opt_present("all");
    if name == "inspect" {
        return inspect(&cli, &command[1..], all, sql_connection_given);
    }
    if all {
        return Err(Error::Config(format!(
            "--all is an option of the inspect command, not of {name}"
        )));
    }
    database_command(&cli, &command).map(|()| ExitCode::SUCCESS)
}

/// The commands on the registry database (glance-registry.conf).
fn database_command(cli: &CliArgs, command: &[String]) -> Result<()> {
    let name = command.first().map_or("", String::as_str);
    let cfg = config::load_registry(cli)?;
    glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    let db = &cfg.db.url;
    let version_arg = || -> Result<Option<u32>> {
        command
            .get(1)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    Error::Config(format!(
                        "'{v}' is not a schema version (0-{})",
                        migrate::LATEST
                    ))
                })
            })
            .transpose()
    };
    match name {
        "db_version" => {
            println!("{}", db::db_version(db)?);
            Ok(())
        }
        "db_sync" | "upgrade" => sync(db, version_arg()?),
        "version_control" => {
            db::db_version_control(db)?;
            println!("database {} is at schema version 0", db::display_name(db));
            Ok(())
        }
        "db_copy" => {
            let Some(source) = command.get(1) else {
                return Err(Error::Config(
                    "db_copy needs the source database URL".into(),
                ));
            };
            let from = DbUrl::parse(source).map_err(|why| {
                Error::Config(format!(
                    "db_copy source {}: {why}",
                    glance_rs::config::redact_url(source)
                ))
            })?;
            let counts = db::db_copy(&from, db)?;
            let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
            println!(
                "copied {} into {}: {}",
                db::display_name(&from),
                db::display_name(db),
                summary.join(", ")
            );
            Ok(())
        }
        "downgrade" => match version_arg()? {
            None => Err(Error::Config(
                "downgrade requires a version argument".into(),
            )),
            Some(_) => Err(Error::Config(
                "downgrades are not supported: restore a backup of the database".into(),
            )),
        },
        other => Err(Error::Config(format!("unrecognized command '{other}'"))),
    }
}

fn sync(db: &DbUrl, target: Option<u32>) -> Result<()> {
    let (from, to) = db::db_sync(db, target)?;
    let name = db::display_name(db);
    if from == to {
        println!("database {name} is at schema version {to}");
    } else {
        println!("database {name} migrated from schema version {from} to {to}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// inspect

/// Images read from the registry at a time by `inspect --all` (a page, not the whole
/// table: a cloud may hold many images and the inspection of each takes a while).
const PAGE: u32 = 100;

/// Bytes read from the store at a time.
const READ_BUFFER: usize = 1024 * 1024;

/// Width of the id column: a UUID (longer ids push the other columns right).
const ID_WIDTH: usize = 36;
/// Width of the format column (the longest format name is 5 characters).
const FORMAT_WIDTH: usize = 8;
/// Width of the virtual size column: the largest size accepted, 2^61, has 19 digits.
const SIZE_WIDTH: usize = 20;

/// What `inspect` concluded about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The data passes the checks an upload gets.
    Ok,
    /// It passes only because `image_format_mismatch = warn` tolerates its format.
    Warning(String),
    /// An upload of this data would be refused: the refusal.
    Unsafe(String),
    /// The data could not be read (or there is none): why.
    Error(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    /// The image id (as stored, or as named on the command line).
    id: String,
    /// The detected format, when known.
    format: Option<Format>,
    /// The virtual size in bytes, known when the data passed.
    virtual_size: Option<u64>,
    verdict: Verdict,
}

impl Finding {
    fn error(id: &str, why: impl Into<String>) -> Finding {
        Finding {
            id: id.to_string(),
            format: None,
            virtual_size: None,
            verdict: Verdict::Error(why.into()),
        }
    }
}

/// Counts of the verdicts, for the summary line and the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// `ok` and `warning` lines.
    ok: usize,
    unsafe_: usize,
    errors: usize,
}

impl Tally {
    fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Ok | Verdict::Warning(_) => self.ok += 1,
            Verdict::Unsafe(_) => self.unsafe_ += 1,
            Verdict::Error(_) => self.errors += 1,
        }
    }

    /// `inspected N images: A ok, U unsafe, E errors` (warnings count as ok).
    fn summary(&self) -> String {
        format!(
            "inspected {} images: {} ok, {} unsafe, {} errors",
            self.ok + self.unsafe_ + self.errors,
            self.ok,
            self.unsafe_,
            self.errors
        )
    }

    /// Every image was read and none is unsafe.
    fn all_ok(&self) -> bool {
        self.unsafe_ == 0 && self.errors == 0
    }
}

/// Text from images, stores or the command line made safe for one line of a terminal:
/// control characters (a newline, an escape sequence from a crafted header) are shown
/// escaped.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One line of the report, four columns separated by spaces:
///
/// ```text
/// ID (36, left-aligned) FORMAT (8, left) VIRTUAL_SIZE (20, right, bytes) VERDICT
/// ```
///
/// FORMAT is the detected format as `disk_format` spells it (`raw`, `qcow2`, `vhd`...),
/// `-` when unknown; VIRTUAL_SIZE is `-` unless the data passed. VERDICT, the rest of the
/// line, is `ok`, `warning: <why>`, `UNSAFE: <refusal>` or `error: <why>`. An id longer
/// than 36 characters is not cut: it pushes the other columns right.
fn report_line(f: &Finding) -> String {
    let format = f.format.map_or("-", Format::name);
    let size = f
        .virtual_size
        .map_or_else(|| "-".to_string(), |v| v.to_string());
    let verdict = match &f.verdict {
        Verdict::Ok => "ok".to_string(),
        Verdict::Warning(w) => format!("warning: {}", one_line(w)),
        Verdict::Unsafe(r) => format!("UNSAFE: {}", one_line(r)),
        Verdict::Error(e) => format!("error: {}", one_line(e)),
    };
    format!(
        "{:<ID_WIDTH$} {format:<FORMAT_WIDTH$} {size:>SIZE_WIDTH$} {verdict}",
        one_line(&f.id)
    )
}

/// `inspect ID...` or `inspect --all`: the report on standard output; exit 1 when an image
/// is unsafe or could not be read.
fn inspect(
    cli: &CliArgs,
    ids: &[String],
    all: bool,
    sql_connection_given: bool,
) -> Result<ExitCode> {
    if all && !ids.is_empty() {
        return Err(Error::Config(
            "inspect takes image ids or --all, not both".into(),
        ));
    }
    if !all && ids.is_empty() {
        return Err(Error::Config("inspect needs image ids or --all".into()));
    }
    let cfg = config::load_api(cli)?;
    glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    if let Some(host) = &cfg.registry_host
        && !sql_connection_given
    {
        return Err(Error::Config(format!(
            "{} uses the registry at {host} (registry_host): give that registry's database \
             with --sql-connection",
            cfg.common.config_path.display()
        )));
    }
    let registry = SqlRegistry::open(
        &cfg.db.url,
        DbOptions {
            busy_timeout: cfg.db.sql_statement_timeout,
            auto_migrate: false,
            ..DbOptions::default()
        },
    )?;
    // The stores glance-api builds from the same file: reads go through the very code that
    // serves downloads, whatever the store.
    let stores = Stores::new(&cfg.store_options())?;
    let on_mismatch = cfg.image_format_mismatch;

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut tally = Tally::default();
    let mut report = |finding: Finding| -> Result<()> {
        tally.add(&finding.verdict);
        writeln!(out, "{}", report_line(&finding))
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("writing the report", e))
    };
    if all {
        let mut after: Option<(String, String)> = None;
        loop {
            let cursor = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
            let page = registry.images_with_data(cursor, PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at.clone(), last.id.clone()));
            for image in &page {
                report(inspect_image(&stores, image, on_mismatch))?;
            }
        }
    } else {
        for id in ids {
            let finding = match registry.find_any(id)? {
                None => Finding::error(id, "no such image"),
                Some(image) if image.deleted => Finding::error(id, "image is deleted"),
                Some(image) => inspect_image(&stores, &image, on_mismatch),
            };
            report(finding)?;
        }
    }
    writeln!(out, "{}", tally.summary()).map_err(|e| Error::io("writing the report", e))?;
    Ok(if tally.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads the stored data of one image through the inspector, checked against its declared
/// `disk_format` and `container_format`. Reading stops at the first refusal (the verdict
/// cannot change), else at the end of the data.
fn inspect_image(stores: &Stores, image: &Image, on_mismatch: OnMismatch) -> Finding {
    let id = image.id.as_str();
    let Some(location) = image.location.as_deref().filter(|l| !l.is_empty()) else {
        return Finding::error(
            id,
            format!("image has no stored data (status {})", image.status),
        );
    };
    let mut reader: Box<dyn Read> = match stores.get(location) {
        Ok(ImageData::File(file, _)) => Box::new(file),
        Ok(ImageData::Stream(stream, _)) => stream,
        // Store errors never show a location's credentials.
        Err(e) => return Finding::error(id, e.message()),
    };
    let mut inspector = Inspector::new(Rules {
        disk_format: image.disk_format.clone(),
        container_format: image.container_format.clone(),
        on_mismatch,
    });
    let mut buf = vec![0u8; READ_BUFFER];
    while inspector.refusal().is_none() {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => inspector.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Finding::error(
                    id,
                    format!(
                        "reading the image data failed after {} bytes: {e}",
                        inspector.position()
                    ),
                );
            }
        }
    }
    let detected = inspector.format();
    match inspector.finish() {
        Ok(found) => Finding {
            id: id.to_string(),
            format: Some(found.format),
            virtual_size: Some(found.virtual_size),
            verdict: found.warning.map_or(Verdict::Ok, Verdict::Warning),
        },
        Err(refusal) => Finding {
            id: id.to_string(),
            format: detected,
            virtual_size: None,
            verdict: Verdict::Unsafe(refusal.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0a7f1e2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

    fn finding(format: Option<Format>, virtual_size: Option<u64>, verdict: Verdict) -> Finding {
        Finding {
            id: ID.into(),
            format,
            virtual_size,
            verdict,
        }
    }

    #[test]
    fn report_lines_have_fixed_columns() {
        let ok = finding(Some(Format::Qcow2), Some(67_108_864), Verdict::Ok);
        assert_eq!(
            report_line(&ok),
            format!("{ID} qcow2    {:>20} ok", 67_108_864)
        );
        let bad = finding(
            Some(Format::Qcow2),
            None,
            Verdict::Unsafe("backing file: x".into()),
        );
        assert_eq!(
            report_line(&bad),
            format!("{ID} qcow2    {:>20} UNSAFE: backing file: x", "-")
        );
        let warned = finding(
            Some(Format::VhdFixed),
            Some(1024),
            Verdict::Warning("mismatch".into()),
        );
        assert_eq!(
            report_line(&warned),
            format!("{ID} vhd      {:>20} warning: mismatch", 1024)
        );
        let failed = Finding::error("short", "no such image");
        assert_eq!(
            report_line(&failed),
            format!("{:<36} -        {:>20} error: no such image", "short", "-")
        );
        // Every column starts at the same offset whatever the values.
        for line in [&ok, &bad, &warned, &failed].map(report_line) {
            assert_eq!(&line[36..37], " ", "{line}");
            assert_eq!(&line[45..46], " ", "{line}");
            assert_eq!(&line[66..67], " ", "{line}");
        }
        // The largest virtual size still fits its column.
        let huge = finding(
            Some(Format::Raw),
            Some(glance_rs::format::MAX_VIRTUAL_SIZE),
            Verdict::Ok,
        );
        assert_eq!(&report_line(&huge)[66..], " ok");
    }

    #[test]
    fn report_lines_stay_one_line() {
        let hostile = Finding {
            id: "a\nb".into(),
            ..finding(None, None, Verdict::Unsafe("x\n\u{1b}[2Jy".into()))
        };
        let line = report_line(&hostile);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.starts_with("a\\nb "), "{line:?}");
        assert!(line.ends_with("UNSAFE: x\\n\\u{1b}[2Jy"), "{line:?}");
    }

    #[test]
    fn tally_and_summary() {
        let mut t = Tally::default();
        assert_eq!(t.summary(), "inspected 0 images: 0 ok, 0 unsafe, 0 errors");
        assert!(t.all_ok());
        t.add(&Verdict::Ok);
        t.add(&Verdict::Warning("w".into()));
        assert!(t.all_ok(), "warnings are ok");
        t.add(&Verdict::Unsafe("u".into()));
        t.add(&Verdict::Error("e".into()));
        t.add(&Verdict::Error("e".into()));
        assert_eq!(t.summary(), "inspected 5 images: 2 ok, 1 unsafe, 2 errors");
        assert!(!t.all_ok());
        let mut t = Tally::default();
        t.add(&Verdict::Error("e".into()));
        assert!(!t.all_ok(), "an unreadable image fails the run");
    }
}
