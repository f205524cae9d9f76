//! `glance-scrubber`: removes the data of `pending_delete` images once they are older than
//! `scrub_time`, then marks them `deleted` (spec §12.2, DECISIONS.md: one-shot mode really
//! deletes). `-D/--daemon` (or `daemon = True`) repeats every `wakeup_time` until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use glance_rs::config::{self, CliArgs, ScrubberConfig};
use glance_rs::registry::db::{DbOptions, SqlRegistry, lease_holder};
use glance_rs::store::{Backend, StoreOptions, Stores};
use glance_rs::{Error, Result, log as glance_log, timeutil};

const PROGRAM: &str = "glance-scrubber";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|cli| match cli {
        None => Ok(()),
        Some(cli) => run(&cli),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("{PROGRAM}: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line; `None` when help or version was printed.
fn parse(args: &[String]) -> Result<Option<CliArgs>> {
    let mut opts = CliArgs::options();
    opts.optflag("D", "daemon", "run every wakeup_time seconds until stopped");
    let m = opts.parse(args).map_err(|e| Error::Config(e.to_string()))?;
    let mut cli = CliArgs::from_matches(&m);
    if cli.help {
        print!(
            "{}",
            opts.usage(&format!("Usage: {PROGRAM} [options] [CONFIG_FILE]"))
        );
        return Ok(None);
    }
    if cli.version {
        println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    if m.opt_present("daemon") {
        cli.set("daemon", "True", "-D/--daemon");
    }
    Ok(Some(cli))
}

fn run(cli: &CliArgs) -> Result<()> {
    let cfg = config::load_scrubber(cli)?;
    glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    let registry = SqlRegistry::open(
        &cfg.db.url,
        DbOptions {
            busy_timeout: cfg.db.sql_statement_timeout,
            auto_migrate: false,
            ..DbOptions::default()
        },
    )?;
    let stores = Stores::new(&StoreOptions {
        default_store: Backend::File,
        filesystem_store_datadir: cfg.filesystem_store_datadir.clone(),
        swift: cfg.swift.clone(),
        s3: cfg.s3.clone(),
        known_stores: cfg.known_stores.clone(),
        location_allowed_hosts: cfg.location_allowed_hosts.clone(),
        // The scrubber only deletes: buffers, direct I/O and the size cap do not apply.
        ..StoreOptions::default()
    })?;
    if !cfg.daemon {
        return scrub(&cfg, &registry, &stores).map(|_| ());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("installing signal handlers", e))?;
    }
    log::info!("running every {} s", cfg.wakeup_time.as_secs());
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = scrub(&cfg, &registry, &stores) {
            log::error!("scrub pass failed: {e}");
        }
        let wake = Instant::now() + cfg.wakeup_time;
        while Instant::now() < wake && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    log::info!("stopped");
    Ok(())
}

/// How long a scrubber holds the images it claimed before another may take them over (it
/// died, or its store is unreachable): long enough for one batch's deletions.
const CLAIM_LEASE: Duration = Duration::from_secs(600);

/// Images claimed at a time.
const BATCH: u32 = 100;

/// One pass: claim the due `pending_delete` images a batch at a time (so that scrubbers on
/// several nodes never delete the same image twice), delete the data of each, then mark it
/// `deleted`. Data already gone counts as deleted; on other failures the image stays
/// claimed until the pass ends (so the pass does not take it again), then is released for
/// the next pass.
fn scrub(cfg: &ScrubberConfig, registry: &SqlRegistry, stores: &Stores) -> Result<usize> {
    let due = SystemTime::now()
        .checked_sub(cfg.scrub_time)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let due = timeutil::format_stored(due);
    let me = lease_holder(PROGRAM);
    let mut done = 0;
    let mut failed = Vec::new();
    loop {
        let images = registry.claim_pending_deletes(&due, &me, CLAIM_LEASE, BATCH)?;
        if images.is_empty() {
            break;
        }
        log::info!("deleting {} images", images.len());
        for image in images {
            let outcome = match &image.location {
                None => Ok(()),
                Some(uri) => stores.delete(uri),
            };
            match outcome {
                Ok(()) | Err(Error::NotFound(_)) => match registry.finish_scrub(&image.id, &me) {
                    Ok(()) => {
                        log::info!("image {} scrubbed", image.id);
                        done += 1;
                    }
                    Err(e) => log::warn!("image {}: {e}", image.id),
                },
                Err(e) => {
                    log::error!("image {}: {e}; will retry", image.id);
                    failed.push(image.id);
                }
            }
        }
    }
    for id in failed {
        registry.release_scrub(&id, &me)?;
    }
    Ok(done)
}
