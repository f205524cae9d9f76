//! The filesystem store: one file per image, named by the image id, in
//! `filesystem_store_datadir` (Glance's `glance/store/filesystem.py`).
//!
//! An upload is written to a hidden temporary file in the same directory
//! (`.<id>.tmp-<random>`), synced, and only then linked into place under its final name, so
//! that nobody ever reads a partial image and a failed upload (client gone, size mismatch,
//! size cap, disk full) leaves nothing behind. Temp files of uploads cut short by a crash
//! are removed at the next start once they have been idle for an hour.
//!
//! Whole blocks are written with `O_DIRECT` (see [`open_direct`] for why), the tail of the
//! image through the page cache; where the filesystem has no direct I/O, everything goes
//! through the page cache with early writeback ([`with_early_writeback`]).
//!
//! Putting the file into place must not replace an image that appeared meanwhile (two
//! uploads of the same id racing): `rename(2)` silently replaces its target, and the
//! no-replace variant (`renameat2(RENAME_NOREPLACE)`) is not reachable from std without
//! `unsafe`. `hard_link(2)` however fails with `EEXIST` atomically, exactly like
//! `O_CREAT|O_EXCL`, so the temp file is hard-linked to the final name and then unlinked.
//! On filesystems without hard links (vfat, some FUSE/network mounts) we fall back to an
//! existence check followed by `rename`, which leaves a tiny window for such a race.
//!
//! Reads and deletes only touch files directly inside the data directory: a `file://`
//! location elsewhere (say, an old row naming `/etc/passwd`) is refused with
//! [`Error::Forbidden`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use log::{debug, warn};

use super::{BUFFER_ALIGN, ImageBody, ImageData, Location, Store, StoreOptions};
use crate::error::{Error, Result};
use crate::image::ImageId;

/// The filesystem store (name `file`, schemes `file` and `filesystem`).
#[derive(Debug)]
pub struct FilesystemStore {
    /// The data directory as configured, made absolute. New images go here and their
    /// locations name it.
    datadir: PathBuf,
    buffer_size: usize,
    /// Write uploads with `O_DIRECT` (see [`open_direct`]).
    direct_io: bool,
}

/// Smallest copy buffer the file store writes with `O_DIRECT`: each direct write is one
/// synchronous device request, so small ones cost more than the page cache saves (on the
/// reference machine 64 KiB direct writes ran at 300 MB/s, 1 MiB ones at 700; see
/// bench/README.md).
pub const DIRECT_IO_MIN_BUFFER: usize = 256 * 1024;

impl FilesystemStore {
    /// Builds the store and prepares its data directory (created if missing). A directory
    /// that cannot be created or written is logged as a warning: the store stays registered
    /// (reads of existing images may still work) and each upload fails with an error naming
    /// the directory and `filesystem_store_datadir`, as Glance's `add_disabled` did. Each
    /// upload tries again, so fixing the directory needs no restart.
    pub fn new(opts: &StoreOptions) -> FilesystemStore {
        let datadir = std::path::absolute(&opts.filesystem_store_datadir)
            .unwrap_or_else(|_| opts.filesystem_store_datadir.clone());
        let store = FilesystemStore {
            datadir,
            buffer_size: opts.buffer_size,
            direct_io: opts.direct_io && opts.buffer_size >= DIRECT_IO_MIN_BUFFER,
        };
        if let Err(e) = store.prepare_dir().and_then(|()| store.probe_writable()) {
            warn!("{}; uploads to the file store will fail", e.message());
        }
        store.remove_stale_temps(STALE_TEMP_AGE);
        store
    }

    /// Removes temporary files that uploads cut short by a crash or a kill left behind
    /// (a failed upload removes its own). Only files untouched for `min_age` go: a live
    /// upload writes to its file all the time, and another `glance-api` may share the
    /// directory.
    fn remove_stale_temps(&self, min_age: Duration) {
        let Ok(entries) = fs::read_dir(&self.datadir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(is_temp_name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let idle = meta.modified().ok().and_then(|m| m.elapsed().ok());
            if !meta.is_file() || idle.is_none_or(|idle| idle < min_age) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => warn!(
                    "removed {} ({} bytes), left by an upload that was interrupted",
                    path.display(),
                    meta.len()
                ),
                Err(e) => warn!("could not remove stale {}: {e}", path.display()),
            }
        }
    }

    /// Removes `path`, logging what went and why.
    fn remove_leftover(&self, path: &Path, why: &str) {
        match fs::remove_file(path) {
            Ok(()) => warn!("removed {} ({why})", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("could not remove {}: {e}", path.display()),
        }
    }

    fn dir_error(&self, doing: &str, e: &io::Error) -> Error {
        Error::Store(format!(
            "The file store cannot {doing} its data directory {} (filesystem_store_datadir): {e}",
            self.datadir.display()
        ))
    }

    fn prepare_dir(&self) -> Result<()> {
        fs::create_dir_all(&self.datadir).map_err(|e| self.dir_error("create", &e))
    }

    fn probe_writable(&self) -> Result<()> {
        let probe = self
            .datadir
            .join(format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| self.dir_error("write to", &e))?;
        fs::remove_file(&probe).map_err(|e| self.dir_error("write to", &e))
    }

    /// The file behind a location, if it is directly inside the data directory (also when
    /// the location spells the directory differently, e.g. through a symlink).
    fn path_of(&self, loc: &Location) -> Result<(PathBuf, String)> {
        let Location::File(f) = loc else {
            return Err(Error::BadRequest(format!(
                "The file store cannot serve {} locations",
                loc.scheme()
            )));
        };
        let path = f.path();
        let outside = || {
            warn!(
                "refusing file location {} outside filesystem_store_datadir {}",
                path.display(),
                self.datadir.display()
            );
            Error::Forbidden("The image location is outside the file store's data directory".into())
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(outside)?;
        let parent = path.parent().ok_or_else(outside)?;
        if checked_name(name).is_err() || !self.is_datadir(parent) {
            return Err(outside());
        }
        Ok((self.datadir.join(name), name.to_string()))
    }

    fn is_datadir(&self, dir: &Path) -> bool {
        if dir == self.datadir {
            return true;
        }
        match (fs::canonicalize(dir), fs::canonicalize(&self.datadir)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// Temp files idle for this long are leftovers: request reads time out long before
/// (`client_socket_timeout`).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The suffix of an upload's temp file, `.<id>.tmp-<uuid>`.
const TEMP_MARK: &str = ".tmp-";

/// The name of the write probe at start-up, `.probe-<uuid>`.
const PROBE_PREFIX: &str = ".probe-";

/// True for the names this store gives its temporary files (`.<id>.tmp-<uuid>` and the
/// write probe `.probe-<uuid>`), and nothing else a user may have put in the directory.
fn is_temp_name(name: &str) -> bool {
    let random = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(uuid) = name.strip_prefix(PROBE_PREFIX) {
        return random(uuid);
    }
    temp_of(name).is_some()
}

/// The image id of an upload temp file's name (`.<id>.tmp-<uuid>`).
fn temp_of(name: &str) -> Option<&str> {
    let random = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    name.strip_prefix('.')
        .and_then(|n| n.rsplit_once(TEMP_MARK))
        .filter(|(id, uuid)| !id.is_empty() && random(uuid))
        .map(|(id, _)| id)
}

/// Checks that an image id can be a file name inside the data directory. Ids are validated
/// by the API already; this is the store's own guard against escaping the directory.
fn checked_name(id: &str) -> Result<&str> {
    crate::image::validate_id(id)?;
    let mut parts = Path::new(id).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(id),
        _ => Err(Error::BadRequest(format!(
            "Invalid image id '{id}' for the file store"
        ))),
    }
}

fn duplicate(id: &str) -> Error {
    Error::Duplicate(format!("Image {id} already exists in the file store"))
}

/// Maps an error on an existing image file.
fn file_error(e: &io::Error, doing: &str, name: &str) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => {
            Error::NotFound(format!("Image data for {name} not found in the file store"))
        }
        io::ErrorKind::PermissionDenied => Error::Forbidden(format!(
            "Permission denied {doing} image data for {name} in the file store"
        )),
        _ => Error::Store(format!(
            "Error {doing} image data for {name} in the file store: {e}"
        )),
    }
}

/// A temporary file that is removed when dropped (after a successful link it is only the
/// second name of the image; after a fallback rename it no longer exists).
struct TempFile {
    path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                "could not remove temporary file {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// Gives the complete temp file its final name without ever replacing an existing file
/// (see the module docs for why a hard link).
fn link_into_place(tmp: &Path, dest: &Path, id: &str) -> Result<()> {
    match fs::hard_link(tmp, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(duplicate(id)),
        Err(e) => {
            debug!("hard link into the file store failed ({e}); falling back to rename");
            if dest.symlink_metadata().is_ok() {
                return Err(duplicate(id));
            }
            fs::rename(tmp, dest)
                .map_err(|e| Error::Store(format!("Error moving image {id} into place: {e}")))
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store for FilesystemStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["file", "filesystem"]
    }

    fn add(&self, id: &ImageId, body: &mut ImageBody<'_>) -> Result<String> {
        let name = checked_name(id)?;
        self.prepare_dir()?;
        let dest = self.datadir.join(name);
        let location = match dest.to_str() {
            Some(p) => format!("file://{p}"),
            None => {
                return Err(Error::Store(format!(
                    "The file store's data directory {} (filesystem_store_datadir) is not \
                     valid UTF-8",
                    self.datadir.display()
                )));
            }
        };
        // Our own locations must parse back (control characters in the directory would not).
        Location::parse(&location).map_err(|e| {
            Error::Store(format!(
                "The file store's data directory {} (filesystem_store_datadir) cannot be \
                 written as a location: {}",
                self.datadir.display(),
                e.message()
            ))
        })?;
        if dest.symlink_metadata().is_ok() {
            return Err(duplicate(id));
        }

        let tmp = TempFile {
            path: self.datadir.join(format!(
                ".{name}{TEMP_MARK}{}",
                uuid::Uuid::new_v4().simple()
            )),
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .map_err(|e| self.dir_error("write to", &e))?;

        let direct = if self.direct_io {
            open_direct(&tmp.path)
        } else {
            None
        };
        let copied = match direct {
            Some(direct) => {
                let mut out = DirectWriter::new(&direct, &file);
                let copied = body.copy_to(&mut out, self.buffer_size);
                debug!(
                    "image {id}: {} bytes written with direct I/O, {} through the page cache",
                    out.direct_bytes,
                    out.offset - out.direct_bytes
                );
                copied
            }
            None => with_early_writeback(&file, |out| body.copy_to(out, self.buffer_size)),
        };
        copied?;
        // Complete and of the declared size before it gets its name.
        body.finish()?;
        file.sync_all()
            .map_err(|e| Error::Store(format!("Error syncing image {id} to disk: {e}")))?;
        drop(file);

        link_into_place(&tmp.path, &dest, id)?;
        drop(tmp);
        if let Err(e) = sync_dir(&self.datadir) {
            if let Err(rm) = fs::remove_file(&dest) {
                warn!(
                    "could not remove {} after a failed sync: {rm}",
                    dest.display()
                );
            }
            return Err(self.dir_error("sync", &e));
        }
        debug!(
            "stored image {id} in the file store: {} bytes",
            body.total()
        );
        Ok(location)
    }

    /// Removes the temp files of `id`, whatever their age, and a complete file that never
    /// became active (a crash between the rename and the registry update).
    fn discard_partial(&self, id: &ImageId) -> Result<()> {
        let name = checked_name(id)?;
        let Ok(entries) = fs::read_dir(&self.datadir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().and_then(temp_of) == Some(name) {
                self.remove_leftover(&entry.path(), "left by an interrupted upload");
            }
        }
        self.remove_leftover(
            &self.datadir.join(name),
            "data of an upload interrupted before its image became active",
        );
        Ok(())
    }

    fn get(&self, loc: &Location) -> Result<ImageData> {
        let (path, name) = self.path_of(loc)?;
        let file = File::open(&path).map_err(|e| file_error(&e, "reading", &name))?;
        let meta = file
            .metadata()
            .map_err(|e| file_error(&e, "reading", &name))?;
        if !meta.is_file() {
            return Err(Error::Store(format!(
                "Image data for {name} in the file store is not a regular file"
            )));
        }
        Ok(ImageData::File(file, meta.len()))
    }

    fn delete(&self, loc: &Location) -> Result<()> {
        let (path, name) = self.path_of(loc)?;
        fs::remove_file(&path).map_err(|e| file_error(&e, "deleting", &name))?;
        debug!("deleted image data {name} from the file store");
        Ok(())
    }

    fn size(&self, loc: &Location) -> Result<u64> {
        let (path, name) = self.path_of(loc)?;
        let meta = fs::metadata(&path).map_err(|e| file_error(&e, "reading", &name))?;
        Ok(meta.len())
    }

    fn writable(&self) -> bool {
        true
    }
}

/// Opens the temp file a second time with `O_DIRECT`, if the filesystem allows it (tmpfs,
/// for one, does not).
///
/// Why direct I/O: an image is written once and read back rarely soon after, so the page
/// cache buys nothing for it. Writing through the cache costs a copy of every byte plus the
/// allocation of fresh cache pages (on a VM whose free memory goes back to the host, that
/// first touch of a page is the most expensive part of a buffered write), and a big upload
/// evicts what the host had cached. With `O_DIRECT` the device reads our buffers directly.
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = i32::try_from(rustix::fs::OFlags::DIRECT.bits()).ok()?;
    match OpenOptions::new()
        .write(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            debug!("no direct I/O in the file store ({e}); writing through the page cache");
            None
        }
    }
}

/// Writes whole, aligned blocks with `O_DIRECT` and anything else (the tail of an image,
/// or buffers a caller did not align) through the page cache, both at the same offset.
/// [`copy_and_hash`] hands over aligned, whole buffers, so only the last piece of an image
/// goes the slow way. Once one piece went through the page cache, the offset is no longer
/// aligned and the rest does too; the final `fsync` covers both paths.
struct DirectWriter<'f> {
    direct: &'f File,
    buffered: &'f File,
    offset: u64,
    /// Of the `offset` bytes written, those that went the direct way.
    direct_bytes: u64,
    /// False once the device refused a direct write (an alignment it wants larger).
    direct_ok: bool,
}

impl<'f> DirectWriter<'f> {
    fn new(direct: &'f File, buffered: &'f File) -> Self {
        DirectWriter {
            direct,
            buffered,
            offset: 0,
            direct_bytes: 0,
            direct_ok: true,
        }
    }

    /// The part of `buf` a direct write can take: its whole blocks, if it starts aligned.
    fn direct_len(&self, buf: &[u8]) -> usize {
        let aligned = self.offset.is_multiple_of(BUFFER_ALIGN as u64)
            && buf.as_ptr().align_offset(BUFFER_ALIGN) == 0;
        if self.direct_ok && aligned {
            buf.len() - buf.len() % BUFFER_ALIGN
        } else {
            0
        }
    }
}

impl Write for DirectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let whole = self.direct_len(buf);
        if whole > 0 {
            match self.direct.write_at(&buf[..whole], self.offset) {
                Ok(n) => {
                    self.offset += n as u64;
                    self.direct_bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    debug!("direct write refused ({e}); writing through the page cache");
                    self.direct_ok = false;
                }
                Err(e) => return Err(e),
            }
        }
        let n = self.buffered.write_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes written between two early writebacks.
const WRITEBACK_STEP: u64 = 64 * 1024 * 1024;

/// Runs `copy` with a writer to `file` that, every [`WRITEBACK_STEP`] bytes, asks a helper
/// thread to `fdatasync` what is written so far.
///
/// Why: the kernel starts writing dirty pages back only past `dirty_background_ratio` (GiBs
/// on a large host), so without this an upload would first fill the page cache and then wait
/// in the final fsync for the whole image to reach the disk. Syncing in the background lets
/// the disk work while the network delivers; the final fsync finds little left. A failed
/// early sync is ignored: the final `sync_all` reports errors.
fn with_early_writeback<T>(file: &File, copy: impl FnOnce(&mut dyn Write) -> T) -> T {
    let Ok(flusher_file) = file.try_clone() else {
        let mut out = file;
        return copy(&mut out);
    };
    let (tick, ticks) = mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for () in ticks {
                let _ = flusher_file.sync_data();
            }
        });
        let mut out = Writeback {
            file,
            since_sync: 0,
            tick,
        };
        copy(&mut out)
        // `out` (and with it `tick`) is dropped here, which ends the flusher.
    })
}

/// The writer of [`with_early_writeback`].
struct Writeback<'f> {
    file: &'f File,
    since_sync: u64,
    tick: mpsc::SyncSender<()>,
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since_sync += n as u64;
        if self.since_sync >= WRITEBACK_STEP {
            // Never wait: if the flusher is still busy, the next step asks again.
            if self.tick.try_send(()).is_ok() {
                self.since_sync = 0;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests;
