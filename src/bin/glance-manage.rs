//! `glance-manage`: the registry database's schema (spec §12.3).
//!
//! `db_version` prints the schema version; `db_sync [V]` (alias `upgrade [V]`) migrates to
//! the latest (or V); `version_control` puts an empty database under version control (our
//! migrations are versioned from the start, so it is `db_sync 0`). Errors print
//! `glance-manage: ERROR: <message>` and exit 1.

use std::path::Path;
use std::process::ExitCode;

use glance_rs::config::{self, CliArgs};
use glance_rs::registry::{migrate, sqlite};
use glance_rs::{Error, Result, log as glance_log};

const PROGRAM: &str = "glance-manage";

const COMMANDS: &str = "Commands:
    db_version          print the schema version of the registry database
    db_sync [VERSION]   create or migrate the database to VERSION (default: latest)
    upgrade [VERSION]   the same as db_sync
    version_control     put a new database under version control (schema version 0)
    downgrade VERSION   not supported: restore a backup instead
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROGRAM}: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    let mut opts = CliArgs::options();
    opts.optopt(
        "",
        "sql-connection",
        "database URL (overrides the config file)",
        "URL",
    );
    format!(
        "{}\n{COMMANDS}",
        opts.usage(&format!("Usage: {PROGRAM} [options] COMMAND [ARGS]"))
    )
}

fn run(args: &[String]) -> Result<()> {
    let mut opts = CliArgs::options();
    opts.optopt("", "sql-connection", "database URL", "URL");
    let m = opts.parse(args).map_err(|e| Error::Config(e.to_string()))?;
    let mut cli = CliArgs::from_matches(&m);
    if cli.help {
        print!("{}", usage());
        return Ok(());
    }
    if cli.version {
        println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if let Some(url) = m.opt_str("sql-connection") {
        cli.set("sql_connection", &url, "--sql-connection");
    }
    // The free arguments are the command, never a config path.
    let command: Vec<String> = std::mem::take(&mut cli.args);
    let Some(name) = command.first() else {
        eprint!("{}", usage());
        return Err(Error::Config("no command given".into()));
    };
    let cfg = config::load_registry(&cli)?;
    glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    let db = cfg.db.sqlite_path.as_path();
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
    match name.as_str() {
        "db_version" => {
            println!("{}", sqlite::db_version(db)?);
            Ok(())
        }
        "db_sync" | "upgrade" => sync(db, version_arg()?),
        "version_control" => {
            if db.exists() && sqlite::db_version(db)? > 0 {
                return Err(Error::Config(format!(
                    "database '{}' is already under migration control",
                    db.display()
                )));
            }
            sync(db, Some(0))
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

fn sync(db: &Path, target: Option<u32>) -> Result<()> {
    let (from, to) = sqlite::db_sync(db, target)?;
    if from == to {
        println!("database {} is at schema version {to}", db.display());
    } else {
        println!(
            "database {} migrated from schema version {from} to {to}",
            db.display()
        );
    }
    Ok(())
}
