//! The copy pipeline of uploads: image data moves from the request body to a store through
//! a few fixed-size, page-aligned buffers while its MD5 is computed on a second thread, so
//! memory stays flat whatever the image size.

use std::io::{self, Read, Write};
use std::sync::mpsc;

use super::checksum::Md5Sum;
use crate::error::{Error, Result};

/// Smallest and largest copy buffer accepted; other values are clamped into this range.
const MIN_BUFFER_SIZE: usize = 4 * 1024;
const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;

/// Buffers of `buf_size` bytes in flight between the copying and the hashing thread.
const PIPELINE_BUFFERS: usize = 4;

/// Alignment of the copy buffers: a page, so that a store can hand them straight to
/// `O_DIRECT` writes (the file store does).
pub(crate) const BUFFER_ALIGN: usize = 4096;

/// A zeroed buffer whose first byte sits on a [`BUFFER_ALIGN`] boundary, carved out of a
/// slightly larger `Vec` (an aligned allocation proper would need `unsafe`).
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + BUFFER_ALIGN];
        // Always possible for bytes; should it ever not be, the buffer is merely unaligned
        // and writers that need alignment fall back to ordinary writes.
        let start = raw.as_ptr().align_offset(BUFFER_ALIGN).min(BUFFER_ALIGN);
        AlignedBuf { raw, start, len }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Copies `reader` to `writer` through buffers of `buf_size` bytes (clamped to 4 KiB–16 MiB),
/// computing the MD5 on the way. Returns the byte count and the lower-case hex MD5.
///
/// MD5 runs on a second thread: an upload costs about as much CPU in MD5 as in copying, and
/// one thread doing both tops out well below a fast disk (see bench/README.md). The copying
/// thread fills a buffer from the reader and writes it; each filled buffer then goes to the
/// hasher and comes back for reuse, so memory stays at `PIPELINE_BUFFERS` (4) buffers whatever
/// the image size.
///
/// Every write but the last is a whole buffer starting on a 4 KiB (`BUFFER_ALIGN`) boundary, so a
/// writer can pass them to the disk without copying (`O_DIRECT`) when `buf_size` is a
/// multiple of the alignment.
///
/// Stops with [`Error::TooLarge`] as soon as more than `limit` bytes arrive (nothing beyond
/// the limit is written). Read errors are the client's (the reader is a request body):
/// [`Error::BadRequest`] saying whether the client disconnected, timed out or sent a broken
/// body. Write errors are the store's: [`Error::Forbidden`] for permissions, else
/// [`Error::Store`].
pub fn copy_and_hash<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf_size: usize,
    limit: u64,
) -> Result<(u64, String)>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let size = buf_size.clamp(MIN_BUFFER_SIZE, MAX_BUFFER_SIZE);
    let (to_hasher, filled) = mpsc::sync_channel::<(AlignedBuf, usize)>(PIPELINE_BUFFERS);
    let (to_copier, emptied) = mpsc::sync_channel::<AlignedBuf>(PIPELINE_BUFFERS);
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut hasher = Md5Sum::new();
            for (buf, n) in filled {
                hasher.update(&buf.as_slice()[..n]);
                // The copier may be gone (error or end): the buffer is simply dropped.
                let _ = to_copier.send(buf);
            }
            hasher.hex()
        });
        let copied = copy_pipelined(reader, writer, size, limit, &to_hasher, &emptied);
        drop(to_hasher); // ends the hasher's loop
        let checksum = hashing
            .join()
            .map_err(|_| Error::Internal("the MD5 thread of an upload panicked".into()))??;
        copied.map(|total| (total, checksum))
    })
}

/// The copying half of [`copy_and_hash`]: fill, write, hand the buffer to the hasher.
fn copy_pipelined<R, W>(
    reader: &mut R,
    writer: &mut W,
    size: usize,
    limit: u64,
    to_hasher: &mpsc::SyncSender<(AlignedBuf, usize)>,
    emptied: &mpsc::Receiver<AlignedBuf>,
) -> Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let hasher_gone = || Error::Internal("the MD5 thread of an upload stopped".into());
    let mut unallocated = PIPELINE_BUFFERS;
    let mut total: u64 = 0;
    loop {
        let mut buf = match emptied.try_recv() {
            Ok(buf) => buf,
            Err(_) if unallocated > 0 => {
                unallocated -= 1;
                AlignedBuf::new(size)
            }
            Err(_) => emptied.recv().map_err(|_| hasher_gone())?,
        };
        let n = fill(reader, buf.as_mut_slice(), total)?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n as u64);
        if total > limit {
            return Err(Error::TooLarge(format!(
                "Image data exceeds the maximum allowed size of {limit} bytes (image_size_cap)"
            )));
        }
        writer
            .write_all(&buf.as_slice()[..n])
            .map_err(|e| write_error(&e))?;
        to_hasher.send((buf, n)).map_err(|_| hasher_gone())?;
        if n < size {
            break; // the reader is at its end
        }
    }
    writer.flush().map_err(|e| write_error(&e))?;
    Ok(total)
}

/// Reads into `buf` until it is full or the reader ends; `before` is the byte count of the
/// earlier buffers, for error messages.
fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8], before: u64) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(&e, before + filled as u64)),
        }
    }
    Ok(filled)
}

pub(crate) fn read_error(e: &io::Error, got: u64) -> Error {
    use io::ErrorKind as K;
    let msg = match e.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            format!("Client disconnected after sending {got} bytes of image data")
        }
        K::TimedOut | K::WouldBlock => {
            format!("Timed out waiting for image data from the client after {got} bytes")
        }
        _ => format!("Error reading image data from the request after {got} bytes: {e}"),
    };
    Error::BadRequest(msg)
}

/// Maps an error writing into a store's own storage.
fn write_error(e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            Error::Forbidden("Permission denied writing image data".into())
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            Error::Store("No space left in the image store".into())
        }
        _ => Error::Store(format!("Error writing image data: {e}")),
    }
}
