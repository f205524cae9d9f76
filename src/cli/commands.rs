//! The commands of `glance`, one function each, named after them.
//!
//! Each turns client errors into a [`CliError`] with the command's wording
//! (`No image with ID <ID> was found`, `Failed to add image: …`) and the right exit status.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};

use crate::client::{self, Client, ImageBody, MemberSpec, Sort};
use crate::image::{Image, ImageId, ImagePatch};
use crate::store::Md5Sum;

use super::fields::{self, AddPlan};
use super::progress::{Progress, ProgressReader};
use super::term::{self, StdinKind};
use super::{CliError, CliResult, Settings, help, output};

/// `glance help [COMMAND]`.
pub fn help(out: &mut dyn Write, command: Option<&str>) -> CliResult {
    match command {
        None => write!(out, "{}", help::full())?,
        Some(name) => match help::command(name) {
            Some(text) => write!(out, "{text}")?,
            None => return Err(unknown_command(name)),
        },
    }
    Ok(())
}

fn unknown_command(name: &str) -> CliError {
    CliError::Usage(format!("Unknown command: {name} (see 'glance help')"))
}

/// Runs `command` with its arguments.
pub fn dispatch(s: &Settings, command: &str, args: &[String], out: &mut dyn Write) -> CliResult {
    match command {
        "help" => {
            if args.len() > 1 {
                return Err(CliError::Usage("Usage: glance help [COMMAND]".into()));
            }
            help(out, args.first().map(String::as_str))
        }
        "add" => add(s, args, out),
        "update" => update(s, args, out),
        "delete" => delete(s, args, out),
        "index" => index(s, args, out),
        "details" => details(s, args, out),
        "show" => show(s, args, out),
        "download" | "image-download" => download(s, args, out),
        "clear" => clear(s, args, out),
        "image-members" => image_members(s, args, out),
        "member-images" => member_images(s, args, out),
        "member-add" => member_add(s, args, out),
        "member-delete" => member_delete(s, args, out),
        "members-replace" => members_replace(s, args, out),
        other => super::cache::dispatch(s, other, args, out)
            .unwrap_or_else(|| Err(unknown_command(other))),
    }
}

/// Exactly `names.len()` positional arguments, else a usage error naming the command.
pub(super) fn positional<'a>(
    command: &str,
    args: &'a [String],
    names: &[&str],
) -> CliResult<Vec<&'a str>> {
    if args.len() != names.len() {
        let what = if args.len() < names.len() {
            format!("missing {}", names[args.len()..].join(" "))
        } else {
            format!("unexpected argument '{}'", args[names.len()])
        };
        return Err(CliError::Usage(format!(
            "{command}: {what} (usage: glance {command} {})",
            names.join(" ")
        )));
    }
    Ok(args.iter().map(String::as_str).collect())
}

/// Maps a client error: 404 → `not_found`; connection failures, credentials and
/// everything else → `Failed to <action>: …`.
pub(super) fn client_error(
    s: &Settings,
    action: &str,
    not_found: &str,
    e: client::Error,
) -> CliError {
    let debug = Some(format!("{e:?}"));
    match e {
        client::Error::NotFound(_) => CliError::NotFound(not_found.to_string()),
        client::Error::Connect { reason, .. } => {
            let mut m = format!(
                "Failed to connect to the Glance API server {}:{}. Is the server running?",
                s.host, s.port
            );
            if s.verbose {
                m.push_str(&format!(" ({reason})"));
            }
            CliError::Failed(m, debug)
        }
        client::Error::Unauthorized(m) | client::Error::Forbidden(m) => CliError::Failed(
            format!(
                "Not authorized to {action}: {m}. Check your credentials (--auth_token, \
                 OS_AUTH_TOKEN; --tenant on a noauth server)."
            ),
            debug,
        ),
        client::Error::InvalidInput(m) => CliError::Usage(m),
        other => CliError::Failed(format!("Failed to {action}: {other}"), debug),
    }
}

/// An image id given on the command line, parsed once here: one that cannot be valid names
/// no image (exit 3, as the server's 404 for it).
pub(super) fn image_id(arg: &str) -> CliResult<ImageId> {
    ImageId::parse(arg).map_err(|_| CliError::NotFound(no_image(arg)))
}

pub(super) fn no_image(id: &str) -> String {
    format!("No image with ID {id} was found")
}

fn warn(messages: &[String]) {
    for m in messages {
        eprintln!("glance: {m}");
    }
}

pub(super) fn dry_run_header(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "Dry run. We would have done the following:")
}

/// Where the data of `add`/`update` comes from.
enum Source {
    File(String),
    Stdin,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(p) => p.clone(),
            Source::Stdin => "standard input".into(),
        }
    }

    /// Opens the data, with a progress display when `progress` (`--progress`).
    fn open(&self, progress: bool) -> CliResult<ImageBody<'static>> {
        let (file, what) = match self {
            Source::File(p) => (File::open(p), p.as_str()),
            Source::Stdin => (term::stdin_file(), "standard input"),
        };
        let body = file
            .and_then(ImageBody::from_file)
            .map_err(|e| CliError::failed(format!("Cannot read image data from {what}: {e}")))?;
        let progress = Progress::for_stderr(progress, body.size());
        Ok(body.map_reader(|r| ProgressReader::new(r, progress)))
    }
}

/// `glance add FIELD=VALUE... [--file PATH | < FILE]`.
pub fn add(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let AddPlan { meta, warnings } = fields::add_meta(fields::parse(args)?)?;
    warn(&warnings);
    let has_location = meta.location.clone().flatten().is_some();
    let stdin = term::stdin_kind();
    let source = match (&s.file, has_location) {
        (Some(_), true) => {
            return Err(CliError::Usage(
                "Either supply a location=LOCATION argument or image data (--file), not both"
                    .into(),
            ));
        }
        (Some(p), false) => Some(Source::File(p.clone())),
        (None, true) => {
            if matches!(stdin, StdinKind::Stream) || matches!(stdin, StdinKind::File(n) if n > 0) {
                return Err(CliError::Usage(
                    "Either supply a location=LOCATION argument or supply image data via a \
                     redirect. You have supplied BOTH image data AND a location."
                        .into(),
                ));
            }
            None
        }
        (None, false) => match stdin {
            StdinKind::File(_) | StdinKind::Stream => Some(Source::Stdin),
            StdinKind::Terminal | StdinKind::Nothing => None,
        },
    };
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Add new image with metadata:")?;
        output::dump(out, &output::patch_pairs(&meta))?;
        if let Some(src) = &source {
            writeln!(out, "with image data from {}", src.describe())?;
        }
        return Ok(());
    }
    let body = source
        .as_ref()
        .map(|src| src.open(s.progress))
        .transpose()?;
    let image = s.client().add_image(&meta, body).map_err(|e| {
        let killed = matches!(
            e,
            client::Error::Transport(_) | client::Error::Io(_) | client::Error::Status(..)
        );
        let mut err = client_error(s, "add image", "Failed to add image: not found", e);
        if killed && let CliError::Failed(m, _) = &mut err {
            m.push_str(" (the image may still be in the registry, with status 'killed')");
        }
        err
    })?;
    writeln!(out, "Added new image with ID: {}", image.id)?;
    if s.verbose {
        writeln!(out, "Returned the following metadata for the new image:")?;
        output::dump(out, &output::image_pairs(&image))?;
    }
    Ok(())
}

/// `glance update ID [FIELD=VALUE...] [--file PATH]`.
pub fn update(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let Some((id, rest)) = args.split_first() else {
        return Err(CliError::Usage(
            "Please specify the ID of the image you wish to update as the first argument".into(),
        ));
    };
    let id = &image_id(id)?;
    let AddPlan { meta, warnings } = fields::update_meta(fields::parse(rest)?)?;
    warn(&warnings);
    let source = s.file.clone().map(Source::File);
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Update existing image {id} with metadata:")?;
        output::dump(out, &output::patch_pairs(&meta))?;
        if let Some(src) = &source {
            writeln!(out, "with image data from {}", src.describe())?;
        }
        return Ok(());
    }
    if meta == ImagePatch::default() && source.is_none() {
        return Err(CliError::Usage(format!(
            "update: nothing to change for image {id}: give FIELD=VALUE arguments or --file"
        )));
    }
    let body = source
        .as_ref()
        .map(|src| src.open(s.progress))
        .transpose()?;
    let client = s.client();
    let image = client
        .update_image(id, &meta, body)
        .map_err(|e| client_error(s, "update image", &no_image(id), e))?;
    writeln!(out, "Updated image {id}")?;
    if s.verbose {
        writeln!(out, "Updated image metadata for image {id}:")?;
        output::show_block(out, &s.host, &image)?;
    }
    Ok(())
}

/// Asks for confirmation unless `--force`; refuses when nobody can answer.
pub(super) fn confirm(s: &Settings, question: &str, refusal: &str) -> CliResult {
    if s.force {
        return Ok(());
    }
    if !term::stdin_is_tty() {
        return Err(CliError::Usage(format!(
            "{refusal}: confirmation needed but standard input is not a terminal \
             (use -f/--force)"
        )));
    }
    let yes = term::ask(question, false)
        .map_err(|e| CliError::failed(format!("reading the answer: {e}")))?;
    if yes {
        Ok(())
    } else {
        Err(CliError::failed(refusal))
    }
}

/// `glance delete ID`.
pub fn delete(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let id = &image_id(positional("delete", args, &["ID"])?[0])?;
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Delete image {id}")?;
        return Ok(());
    }
    confirm(
        s,
        &format!("Delete image {id}?"),
        &format!("Not deleting image {id}"),
    )?;
    s.client()
        .delete_image(id)
        .map_err(|e| client_error(s, "delete image", &no_image(id), e))?;
    writeln!(out, "Deleted image {id}")?;
    Ok(())
}

/// `glance show ID`.
pub fn show(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    if args.is_empty() {
        return Err(CliError::Usage(
            "Please specify the image identifier as the first argument. Example: glance show \
             6f2fa3e1-…"
                .into(),
        ));
    }
    let id = &image_id(positional("show", args, &["ID"])?[0])?;
    let image = s
        .client()
        .get_image_meta(id)
        .map_err(|e| client_error(s, "show image", &no_image(id), e))?;
    output::show_block(out, &s.host, &image)?;
    Ok(())
}

/// `glance download ID [--file PATH]`.
pub fn download(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let id = &image_id(positional("download", args, &["ID"])?[0])?;
    let path = s.file.clone().filter(|p| p != "-");
    if path.is_none() && io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "download: refusing to write image data to a terminal: use --file PATH or \
             redirect standard output"
                .into(),
        ));
    }
    let client = s.client();
    let (image, reader) = client.get_image(id).map_err(|e| match e {
        // GET is 404 for images without data too: say which it is.
        client::Error::NotFound(_) => match client.get_image_meta(id) {
            Ok(image) => CliError::failed(format!(
                "Image {id} is {}: only active images have data to download",
                image.status
            )),
            Err(e) => client_error(s, "download image", &no_image(id), e),
        },
        e => client_error(s, "download image", &no_image(id), e),
    })?;
    // On stderr, so a download to stdout stays the image's bytes alone.
    let progress = Progress::for_stderr(s.progress, Some(image.size));
    let mut reader = ProgressReader::new(reader, progress);
    let result = match &path {
        Some(p) => {
            let file =
                File::create(p).map_err(|e| CliError::failed(format!("Cannot create {p}: {e}")))?;
            let mut w = io::BufWriter::with_capacity(64 * 1024, file);
            let r = copy_checked(&mut reader, &mut w, &image)
                .and_then(|n| w.flush().map(|()| n).map_err(CopyError::Write));
            if r.is_err() {
                let _ = std::fs::remove_file(p);
            }
            r
        }
        None => copy_checked(&mut reader, out, &image),
    };
    let n = result.map_err(|e| match e {
        CopyError::Read(e) => CliError::failed(format!("Failed to download image {id}: {e}")),
        CopyError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe => CliError::BrokenPipe,
        CopyError::Write(e) => CliError::failed(format!("Failed to write image {id}: {e}")),
        CopyError::Mismatch(m) => CliError::failed(format!("Image {id} is corrupt: {m}")),
    })?;
    if s.verbose {
        eprintln!(
            "Downloaded image {id}: {n} bytes to {}",
            path.as_deref().unwrap_or("standard output")
        );
    }
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Mismatch(String),
}

/// Streams the data through a 64 KiB buffer, hashing it, and checks size and checksum.
fn copy_checked(r: &mut dyn Read, w: &mut dyn Write, image: &Image) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut md5 = Md5Sum::new();
    let mut n: u64 = 0;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        md5.update(&buf[..k]);
        w.write_all(&buf[..k]).map_err(CopyError::Write)?;
        n += k as u64;
    }
    if n != image.size {
        return Err(CopyError::Mismatch(format!(
            "received {n} bytes, its size is {}",
            image.size
        )));
    }
    let got = md5
        .hex()
        .map_err(|e| CopyError::Read(io::Error::other(e.message().to_string())))?;
    if let Some(want) = &image.checksum
        && !want.eq_ignore_ascii_case(&got)
    {
        return Err(CopyError::Mismatch(format!(
            "the data has MD5 {got}, its checksum is {want}"
        )));
    }
    Ok(n)
}

/// Fetches pages of a listing, asking between full pages when someone can answer.
fn paginate<T>(
    s: &Settings,
    mut fetch: impl FnMut(Option<&str>) -> Result<Vec<T>, client::Error>,
    id_of: impl Fn(&T) -> &str,
    mut print: impl FnMut(&[T], bool) -> io::Result<()>,
    action: &str,
) -> CliResult {
    let ask = !s.force && term::stdin_is_tty();
    let mut marker = s.marker.clone();
    let mut first = true;
    loop {
        let page = fetch(marker.as_deref()).map_err(|e| {
            let nf = format!("Failed to {action}: the marker image was not found");
            client_error(s, action, &nf, e)
        })?;
        if page.is_empty() {
            return Ok(());
        }
        print(&page, first)?;
        first = false;
        if (page.len() as u64) < s.limit {
            return Ok(());
        }
        if ask {
            let more = term::ask("Fetch next page?", true)
                .map_err(|e| CliError::failed(format!("reading the answer: {e}")))?;
            if !more {
                return Ok(());
            }
        }
        marker = page.last().map(|i| id_of(i).to_string());
    }
}

fn sort(s: &Settings) -> Sort {
    Sort {
        key: s.sort_key.clone(),
        dir: s.sort_dir,
    }
}

/// `glance index [FILTER=VALUE...]`.
pub fn index(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let filters = fields::filters(fields::parse(args)?)?;
    let client = s.client();
    let sort = sort(s);
    paginate(
        s,
        |marker| client.get_images(&filters, &sort, Some(s.limit), marker),
        |i| i.id.as_str(),
        |page, first| {
            if first {
                output::index_header(out)?;
            }
            for i in page {
                output::index_row(out, i)?;
            }
            out.flush()
        },
        "show index",
    )
}

/// `glance details [FILTER=VALUE...]`.
pub fn details(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let filters = fields::filters(fields::parse(args)?)?;
    let client = s.client();
    let sort = sort(s);
    paginate(
        s,
        |marker| client.get_images_detailed(&filters, &sort, Some(s.limit), marker),
        |i| i.id.as_str(),
        |page, first| {
            if first {
                output::details_rule(out)?;
            }
            for i in page {
                output::show_block(out, &s.host, i)?;
                output::details_rule(out)?;
            }
            out.flush()
        },
        "show details",
    )
}

/// `glance clear`.
pub fn clear(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    positional("clear", args, &[])?;
    if !s.dry_run {
        confirm(s, "Delete all images?", "Not deleting any images")?;
    }
    let client = s.client();
    let images = list_all(s, &client)?;
    if s.dry_run {
        dry_run_header(out)?;
        for (id, name) in &images {
            writeln!(out, "Delete image {id} \"{name}\"")?;
        }
        return Ok(());
    }
    let mut failed = None;
    for (id, name) in &images {
        if s.verbose {
            write!(out, "Deleting image {id} \"{name}\" ... ")?;
            out.flush()?;
        }
        match client.delete_image(id) {
            Ok(()) => {
                if s.verbose {
                    writeln!(out, "done")?;
                }
            }
            Err(e) => {
                if s.verbose {
                    writeln!(out, "failed")?;
                }
                let e = client_error(s, &format!("delete image {id}"), &no_image(id), e);
                eprintln!("glance: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        None => Ok(()),
        Some(_) => Err(CliError::failed("Failed to delete some images (see above)")),
    }
}

/// Every image the caller can list, as (id, name), collected before anything is deleted.
fn list_all(s: &Settings, client: &Client) -> CliResult<Vec<(String, String)>> {
    const PAGE: u64 = 100;
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = client
            .get_images(
                &client::Filters::new(),
                &Sort::default(),
                Some(PAGE),
                marker.as_deref(),
            )
            .map_err(|e| client_error(s, "list images", "Failed to list images", e))?;
        let full = page.len() as u64 == PAGE;
        marker = page.last().map(|i| i.id.clone());
        all.extend(
            page.into_iter()
                .map(|i| (i.id, i.name.unwrap_or_else(|| "None".into()))),
        );
        if !full {
            return Ok(all);
        }
    }
}

/// `glance image-members ID`.
pub fn image_members(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let id = &image_id(positional("image-members", args, &["ID"])?[0])?;
    let members = s
        .client()
        .get_image_members(id)
        .map_err(|e| client_error(s, "show image members", &no_image(id), e))?;
    output::members(out, &members)?;
    Ok(())
}

/// `glance member-images MEMBER`.
pub fn member_images(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let member = positional("member-images", args, &["MEMBER"])?[0];
    match s.client().get_member_images(member) {
        Ok(shared) => output::shared_images(out, &shared)?,
        Err(client::Error::NotFound(_)) => writeln!(out, "No images shared with member {member}")?,
        Err(e) => return Err(client_error(s, "show member images", "", e)),
    }
    Ok(())
}

fn not_sharable(id: &str) -> String {
    format!("No image with ID {id} was found, or you may not share it")
}

/// `glance member-add ID MEMBER [--can-share]`.
pub fn member_add(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let a = positional("member-add", args, &["ID", "MEMBER"])?;
    let (id, member) = (&image_id(a[0])?, a[1]);
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Add \"{member}\" to the member list of image \"{id}\"")?;
        if s.can_share {
            writeln!(
                out,
                "New member would have been able to further share image."
            )?;
        }
        return Ok(());
    }
    s.client()
        .add_member(id, member, Some(s.can_share))
        .map_err(|e| client_error(s, "add image member", &not_sharable(id), e))
}

/// `glance member-delete ID MEMBER`.
pub fn member_delete(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let a = positional("member-delete", args, &["ID", "MEMBER"])?;
    let (id, member) = (&image_id(a[0])?, a[1]);
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(
            out,
            "Remove \"{member}\" from the member list of image \"{id}\""
        )?;
        return Ok(());
    }
    s.client()
        .delete_member(id, member)
        .map_err(|e| client_error(s, "delete image member", &not_sharable(id), e))
}

/// `glance members-replace ID MEMBER [--can-share]`.
pub fn members_replace(s: &Settings, args: &[String], out: &mut dyn Write) -> CliResult {
    let a = positional("members-replace", args, &["ID", "MEMBER"])?;
    let (id, member) = (&image_id(a[0])?, a[1]);
    if s.dry_run {
        dry_run_header(out)?;
        writeln!(out, "Replace members of image {id} with \"{member}\"")?;
        if s.can_share {
            writeln!(
                out,
                "New member would have been able to further share image."
            )?;
        }
        return Ok(());
    }
    let spec = MemberSpec {
        member_id: member.to_string(),
        can_share: Some(s.can_share),
    };
    s.client()
        .replace_members(id, &[spec])
        .map_err(|e| client_error(s, "update image members", &not_sharable(id), e))
}
