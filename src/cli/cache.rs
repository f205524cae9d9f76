//! The `cache-*` commands of `glance` (spec §12.1, Diablo's `bin/glance`): clients of the
//! cache management API, with Diablo's messages and tables (`No cached images.`, `Found 2
//! cached images...`, columns of fixed width separated by one space, values clipped, sizes
//! right-justified). The ID column is 36 wide, as in `index`, so that a UUID fits.

use std::io::{self, Write};

use crate::client::{self, CachedImage};

use super::commands::{client_error, confirm, dry_run_header, image_id, no_image, positional};
use super::{CliError, CliResult, Settings};

/// Runs a cache command; `None` when `command` is not one.
pub fn dispatch(
    s: &Settings,
    command: &str,
    args: &[String],
    out: &mut dyn Write,
) -> Option<CliResult> {
    Some(match command {
        "cache-index" => index(s, args, out),
        "cache-invalid" => invalid(s, args, out),
        "cache-incomplete" => incomplete(s, args, out),
        "cache-prefetching" => prefetching(s, args, out),
        "cache-prefetch" => prefetch(s, args, out),
        "cache-purge" => purge(s, args, out),
        "cache-clear" => clear(s, args, out),
        "cache-reap-invalid" => reap(s, args, out, Reap::Invalid),
        "cache-reap-stalled" => reap(s, args, out, Reap::Stalled),
        _ => return None,
    })
}

/// What a 404 from the cache API means: the route is missing.
const NOT_ENABLED: &str =
    "The server has no image cache (image_cache_enabled = False in its glance-api.conf)";

/// A failed cache call: a 404 is a server without the cache (exit 1, not 3: no image is
/// missing).
fn failed(s: &Settings, action: &str, e: client::Error) -> CliError {
    match client_error(s, action, NOT_ENABLED, e) {
        CliError::NotFound(m) => CliError::Failed(m, None),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// Tables

/// One column: width, title, right-justified.
type Column = (usize, &'static str, bool);

const ID: Column = (36, "ID", false);
const NAME: Column = (30, "Name", false);
const ACCESSED: Column = (19, "Last Accessed (UTC)", false);
const MODIFIED: Column = (19, "Last Modified (UTC)", false);
const SIZE: Column = (14, "Size", true);
const EXPECTED: Column = (14, "Expected Size", true);
const DONE: Column = (7, "% Done", true);

fn cell(text: &str, (width, _, right): Column) -> String {
    let clipped: String = text.chars().take(width).collect();
    if right {
        format!("{clipped:>width$}")
    } else {
        format!("{clipped:<width$}")
    }
}

fn header(out: &mut dyn Write, columns: &[Column]) -> io::Result<()> {
    let titles: Vec<String> = columns
        .iter()
        .map(|c| cell(c.1, (c.0, c.1, false)))
        .collect();
    writeln!(out, "{}", titles.join(" "))?;
    let rules: Vec<String> = columns.iter().map(|c| "-".repeat(c.0)).collect();
    writeln!(out, "{}", rules.join(" "))
}

fn row(out: &mut dyn Write, columns: &[Column], values: &[String]) -> io::Result<()> {
    let cells: Vec<String> = values
        .iter()
        .zip(columns)
        .map(|(v, c)| cell(v, *c))
        .collect();
    writeln!(out, "{}", cells.join(" "))
}

fn or_none(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "None".into())
}

fn expected(e: &CachedImage) -> String {
    e.expected_size
        .map_or_else(|| "UNKNOWN".into(), |n| n.to_string())
}

/// Diablo's `get_percent_done`: whole percent, `UNKNOWN` without an expected size.
fn percent_done(e: &CachedImage) -> String {
    match e.expected_size {
        Some(n) if n > 0 => (u128::from(e.size) * 100 / u128::from(n)).to_string(),
        _ => "UNKNOWN".into(),
    }
}

/// Prints a listing of cache entries in Diablo's form: `none` when there are none, else
/// `Found N <what>...`, the header and one row per entry (`values` of each, per column).
fn listing<const N: usize>(
    out: &mut dyn Write,
    entries: &[CachedImage],
    none: &str,
    what: &str,
    cols: &[Column; N],
    values: impl Fn(&CachedImage) -> [String; N],
) -> CliResult {
    if entries.is_empty() {
        writeln!(out, "{none}")?;
        return Ok(());
    }
    writeln!(out, "Found {} {what}...", entries.len())?;
    header(out, cols)?;
    for e in entries {
        row(out, cols, &values(e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Commands

/// `glance cache-index`.
pub fn index(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("cache-index", args, &[])?;
    let images = s
        .client()
        .get_cached_images()
        .map_err(|e| failed(s, "show cached images", e))?;
    let cols = [ID, NAME, ACCESSED, SIZE, (10, "Hits", true)];
    listing(
        out,
        &images,
        "No cached images.",
        "cached images",
        &cols,
        |e| {
            [
                e.id.clone(),
                or_none(&e.name),
                or_none(&e.last_accessed),
                e.size.to_string(),
                e.hits.map_or_else(|| "UNKNOWN".into(), |h| h.to_string()),
            ]
        },
    )
}

/// `glance cache-invalid` (Diablo printed the last access under "Last Modified"; this
/// prints the last modification).
pub fn invalid(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("cache-invalid", args, &[])?;
    let images = s
        .client()
        .get_invalid_cached_images()
        .map_err(|e| failed(s, "show invalid cache images", e))?;
    let cols = [
        ID,
        NAME,
        (30, "Error", false),
        MODIFIED,
        SIZE,
        EXPECTED,
        DONE,
    ];
    let none = "No invalid cached images.";
    listing(out, &images, none, "invalid cached images", &cols, |e| {
        [
            e.id.clone(),
            or_none(&e.name),
            or_none(&e.error),
            or_none(&e.last_modified),
            e.size.to_string(),
            expected(e),
            percent_done(e),
        ]
    })
}

/// `glance cache-incomplete`.
pub fn incomplete(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("cache-incomplete", args, &[])?;
    let images = s
        .client()
        .get_incomplete_cached_images()
        .map_err(|e| failed(s, "show incomplete cache images", e))?;
    let cols = [ID, NAME, MODIFIED, SIZE, EXPECTED, DONE];
    let none = "No incomplete cached images.";
    listing(out, &images, none, "incomplete cached images", &cols, |e| {
        [
            e.id.clone(),
            or_none(&e.name),
            or_none(&e.last_modified),
            e.size.to_string(),
            expected(e),
            percent_done(e),
        ]
    })
}

/// `glance cache-prefetching`.
pub fn prefetching(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("cache-prefetching", args, &[])?;
    let images = s
        .client()
        .get_prefetching_cache_images()
        .map_err(|e| failed(s, "show prefetching images", e))?;
    let cols = [ID, NAME, ACCESSED, (10, "Status", true)];
    let none = "No images being prefetched.";
    listing(out, &images, none, "images being prefetched", &cols, |e| {
        [
            e.id.clone(),
            or_none(&e.name),
            or_none(&e.last_accessed),
            or_none(&e.status),
        ]
    })
}

/// `glance cache-prefetch ID...`: each image is queued; a missing one is reported and the
/// others still queued (as in Diablo). Exit 1 when any failed, else 3 when any was not
/// found.
pub fn prefetch(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    if args.is_empty() {
        return Err(CliError::Usage(
            "cache-prefetch: missing ID (usage: glance cache-prefetch ID...)".into(),
        ));
    }
    let client = s.client();
    let (mut missing, mut failure) = (None, None);
    for arg in args {
        if s.verbose {
            writeln!(out, "Prefetching image '{arg}'")?;
        }
        let result = image_id(arg).and_then(|id| {
            client.prefetch_cache_image(id.as_str()).map_err(|e| {
                client_error(s, "prefetch the specified cached image", &no_image(arg), e)
            })
        });
        match result {
            Ok(()) => {}
            Err(CliError::NotFound(m)) => {
                writeln!(out, "{m}")?;
                missing = Some(CliError::NotFound(m));
            }
            Err(e) => {
                writeln!(out, "{e}")?;
                failure = Some(e);
            }
        }
    }
    if s.verbose {
        writeln!(out, "done")?;
    }
    match failure.or(missing) {
        Some(CliError::Failed(m, d)) => Err(CliError::Failed(format!("{m} (see above)"), d)),
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `glance cache-purge ID`.
pub fn purge(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let id = image_id(positional("cache-purge", args, &["ID"])?[0])?;
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Purge cached image {id}")?;
        return Ok(());
    }
    confirm(
        s,
        &format!("Purge cached image {id}?"),
        &format!("Not purging cached image {id}"),
    )?;
    s.client()
        .purge_cached_image(id.as_str())
        .map_err(|e| failed(s, "purge the specified cached image", e))?;
    if s.verbose {
        writeln!(out, "done")?;
    }
    Ok(())
}

/// `glance cache-clear`.
pub fn clear(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("cache-clear", args, &[])?;
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Clear all cached images")?;
        return Ok(());
    }
    confirm(
        s,
        "Clear all cached images?",
        "Not purging any cached images.",
    )?;
    let n = s
        .client()
        .clear_cached_images()
        .map_err(|e| failed(s, "clear all cached images", e))?;
    if s.verbose {
        writeln!(out, "Purged {n} cached images")?;
    }
    Ok(())
}

/// Which entries `cache-reap-*` removes.
#[derive(Debug, Clone, Copy)]
enum Reap {
    Invalid,
    Stalled,
}

/// `glance cache-reap-invalid`, `glance cache-reap-stalled`.
fn reap(s: &Settings, args: &[String], out: &mut dyn Write, which: Reap) -> CliResult {
    let (command, kind) = match which {
        Reap::Invalid => ("cache-reap-invalid", "invalid"),
        Reap::Stalled => ("cache-reap-stalled", "stalled"),
    };
    positional(command, args, &[])?;
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Reap all {kind} cached images")?;
        return Ok(());
    }
    confirm(
        s,
        &format!("Reap all {kind} cached images?"),
        &format!("Not reaping any {kind} cached images."),
    )?;
    let client = s.client();
    let n = match which {
        Reap::Invalid => client.reap_invalid_cached_images(),
        Reap::Stalled => client.reap_stalled_cached_images(),
    }
    .map_err(|e| failed(s, &format!("reap {kind} images"), e))?;
    if s.verbose {
        writeln!(out, "Reaped {n} {kind} cached images")?;
    }
    Ok(())
}

/// The help text of a cache command.
pub fn help(name: &str) -> Option<&'static str> {
    Some(match name {
        "cache-index" => CACHE_INDEX,
        "cache-invalid" => CACHE_INVALID,
        "cache-incomplete" => CACHE_INCOMPLETE,
        "cache-prefetching" => CACHE_PREFETCHING,
        "cache-prefetch" => CACHE_PREFETCH,
        "cache-purge" => CACHE_PURGE,
        "cache-clear" => CACHE_CLEAR,
        "cache-reap-invalid" => CACHE_REAP_INVALID,
        "cache-reap-stalled" => CACHE_REAP_STALLED,
        _ => return None,
    })
}

const CACHE_INDEX: &str = "\
Lists the images in the image cache of the server (image_cache_enabled = True;
admins only): ID, name, last access (UTC), size and the number of downloads
served from the cache. Prints 'No cached images.' when there is none.";

const CACHE_INVALID: &str = "\
Lists the cache entries that failed verification (their size or MD5 was not
the registry's, the store failed while they were written, or the file changed
on disk): ID, name, error, last modification, size, expected size, percent.
glance-cache-reaper removes them after image_cache_invalid_entry_grace_period;
'glance cache-reap-invalid' at once.";

const CACHE_INCOMPLETE: &str = "\
Lists the images being written into the cache (by downloads or the
prefetcher), with the bytes written so far and the percent done.";

const CACHE_PREFETCHING: &str = "\
Lists the images queued for glance-cache-prefetcher ('queued') and the one it
is fetching ('in-progress').";

const CACHE_PREFETCH: &str = "\
Queues each active image ID for glance-cache-prefetcher, which fetches queued
images into the cache one at a time when it next runs. An image that does not
exist (or is not active) is reported and the others are still queued; one
already cached or queued is refused by the server. With -v prints each ID.

Example:
    glance cache-prefetch 6f2f...c1 0b1e...77";

const CACHE_PURGE: &str = "\
Removes image ID from the cache (the image itself is untouched). Asks
'Purge cached image <ID>? [y/N]' on the terminal unless -f/--force; when
standard input is not a terminal, refuses without --force (exit 2). Silent
on success (with -v prints 'done').";

const CACHE_CLEAR: &str = "\
Removes every image from the cache. Asks 'Clear all cached images? [y/N]'
unless -f/--force. With -v prints how many were purged.";

const CACHE_REAP_INVALID: &str = "\
Removes every invalid cache entry now, whatever its age. Asks for
confirmation unless -f/--force. With -v prints how many were reaped.";

const CACHE_REAP_STALLED: &str = "\
Removes incomplete cache entries not written to for image_cache_stall_timeout
seconds whose download is no longer running. Asks for confirmation unless
-f/--force. With -v prints how many were reaped.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_diablos() {
        let mut out = Vec::new();
        let cols = [ID, NAME, ACCESSED, SIZE, (10, "Hits", true)];
        header(&mut out, &cols).ok();
        let values = [
            "6f2f".into(),
            "cirros".into(),
            "2026-12-03T10:11:12.5".into(),
            "123".into(),
            "4".into(),
        ];
        row(&mut out, &cols, &values).ok();
        let text = String::from_utf8_lossy(&out).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{:<36} {:<30} {:<19} {:<14} {:<10}",
                "ID", "Name", "Last Accessed (UTC)", "Size", "Hits"
            )
        );
        assert!(lines[1].starts_with(&format!("{} {}", "-".repeat(36), "-".repeat(30))));
        assert_eq!(
            lines[2],
            format!(
                "{:<36} {:<30} 2026-12-03T10:11:12 {:>14} {:>10}",
                "6f2f", "cirros", 123, 4
            )
        );
    }

    #[test]
    fn percent_done_as_diablo() {
        let e = |size, expected| CachedImage {
            size,
            expected_size: expected,
            ..CachedImage::default()
        };
        assert_eq!(percent_done(&e(50, Some(200))), "25");
        assert_eq!(percent_done(&e(1, Some(3))), "33");
        assert_eq!(percent_done(&e(1, Some(0))), "UNKNOWN");
        assert_eq!(percent_done(&e(1, None)), "UNKNOWN");
    }
}
