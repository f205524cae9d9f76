//! The one path of upload data into the stores: [`ImageBody`] wraps the request body and
//! counts, hashes and caps every byte it hands to a backend, and checks it against the
//! declared size. [`super::Stores::add`] builds it; no backend reads a request body any
//! other way, so the size cap, the size check and the checksum are the same for every store.
//!
//! A backend takes the data in one of two ways:
//!
//! * [`ImageBody::copy_to`] (the file store): a few fixed-size, page-aligned buffers, with
//!   the MD5 computed on a second thread, so memory stays flat whatever the image size;
//! * [`ImageBody::part`] and [`ImageBody::fill`] (the object stores): bounded parts
//!   (segments, multipart parts) streamed one after another straight into HTTP requests,
//!   with the MD5 computed inline.
//!
//! The HTTP client reading a part sees only `io::Error`s. When the failure is the client's
//! (it disconnected, sent more or fewer bytes than it declared, went past `image_size_cap`)
//! the body keeps the real [`Error`] so the store can answer with it instead of a generic
//! "error writing to Swift".

use std::io::{self, Read, Write};
use std::sync::mpsc;

use super::checksum::Md5Sum;
use crate::error::{Error, Result};
use crate::format::{Inspection, Inspector, Rules};

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

/// The request body of an upload as the stores see it: every byte handed out is counted,
/// hashed and shown to the format [`Inspector`]; more than the declared size or than
/// `image_size_cap`, or data the inspector refuses, fails before the byte is handed out, so
/// nothing beyond a limit and nothing after a refusal is ever written.
pub struct ImageBody<'a> {
    inner: &'a mut dyn Read,
    hasher: Md5Sum,
    /// Sees every byte in order, on the copying thread (it is cheap: after the first 64 KiB
    /// it only keeps the last 1.5 KiB, see [`crate::format`]).
    inspector: Inspector,
    /// Bytes read from the request body (including a byte read ahead).
    total: u64,
    /// The declared size, if any: more or fewer bytes are a size mismatch.
    expected: Option<u64>,
    /// `image_size_cap`.
    cap: u64,
    /// The first failure of the client side, kept for the store to report.
    failure: Option<Error>,
    /// One byte read ahead by [`ImageBody::at_eof`]: counted, not yet hashed.
    peeked: Option<u8>,
    eof: bool,
}

impl std::fmt::Debug for ImageBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBody")
            .field("total", &self.total)
            .field("expected", &self.expected)
            .field("cap", &self.cap)
            .finish()
    }
}

impl<'a> ImageBody<'a> {
    /// Wraps a request body. `expected` is the declared size; `cap` is `image_size_cap`.
    /// Only [`super::Stores::add`] builds one, after checking `expected` against `cap`.
    /// The data is inspected against the formats' safety rules only; see
    /// [`ImageBody::with_rules`].
    #[cfg(test)]
    pub(crate) fn new(inner: &'a mut dyn Read, expected: Option<u64>, cap: u64) -> ImageBody<'a> {
        ImageBody::with_rules(inner, expected, cap, Rules::default())
    }

    /// Wraps a request body whose data must also fit `rules` (the declared formats).
    pub(crate) fn with_rules(
        inner: &'a mut dyn Read,
        expected: Option<u64>,
        cap: u64,
        rules: Rules,
    ) -> ImageBody<'a> {
        ImageBody {
            inner,
            hasher: Md5Sum::new(),
            inspector: Inspector::new(rules),
            total: 0,
            expected,
            cap,
            failure: None,
            peeked: None,
            eof: false,
        }
    }

    /// Bytes read from the body so far (after [`ImageBody::finish`]: the image size).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes handed out so far (a byte read ahead by [`ImageBody::at_eof`] belongs to the
    /// next part).
    pub(crate) fn consumed(&self) -> u64 {
        self.total - u64::from(self.peeked.is_some())
    }

    /// The declared size, if any.
    pub fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// The client-side failure seen so far, if any (taken: asked once per failure).
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// The failure to report for an error that happened while a part was being sent: the
    /// client's, if the body saw one, else `store_error()`.
    pub(crate) fn blame(&mut self, store_error: impl FnOnce() -> Error) -> Error {
        self.take_failure().unwrap_or_else(store_error)
    }

    /// The MD5 of everything handed out, lower-case hex.
    pub fn checksum(&mut self) -> Result<String> {
        self.hasher.hex()
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let msg = e.message();
        if self.failure.is_none() {
            self.failure = Some(e);
        }
        io::Error::other(msg)
    }

    /// The error for an `io::Error` a read returned: the recorded failure, if any.
    fn failure_or(&mut self, e: &io::Error) -> Error {
        self.take_failure()
            .unwrap_or_else(|| Error::BadRequest(e.to_string()))
    }

    fn size_mismatch(&self, got: &str) -> Error {
        Error::BadRequest(format!(
            "Size mismatch: x-image-meta-size/Content-Length said {} bytes, got {got}",
            self.expected.unwrap_or(0)
        ))
    }

    /// Reads from the body into `buf`, counting and checking the limits, without hashing;
    /// errors are recorded.
    fn read_counted(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            return Ok(1); // already counted when peeked
        }
        if self.eof {
            return Ok(0);
        }
        if let Some(err) = self.refusal_error() {
            return Err(self.fail(err)); // nothing more is read once the data is refused
        }
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = read_error(&e, self.total);
                    return Err(self.fail(err));
                }
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        let total = self.total.saturating_add(n as u64);
        if let Some(expected) = self.expected
            && total > expected
        {
            let err = self.size_mismatch(&format!("more than {expected}"));
            return Err(self.fail(err));
        }
        if total > self.cap {
            let err = Error::TooLarge(format!(
                "Image data exceeds the maximum allowed size of {} bytes (image_size_cap)",
                self.cap
            ));
            return Err(self.fail(err));
        }
        self.total = total;
        self.inspector.feed(&buf[..n]);
        if let Some(err) = self.refusal_error() {
            return Err(self.fail(err));
        }
        Ok(n)
    }

    /// The inspection's verdict once the body is finished: the format and virtual size, or
    /// the refusal ([`Error::ImageRefused`]).
    pub(crate) fn inspection(&mut self) -> Result<Inspection> {
        let inspector = std::mem::replace(&mut self.inspector, Inspector::new(Rules::default()));
        inspector
            .finish()
            .map_err(|refusal| Error::ImageRefused(format!("Image data refused: {refusal}")))
    }

    fn refusal_error(&self) -> Option<Error> {
        let refusal = self.inspector.refusal()?;
        Some(Error::ImageRefused(format!(
            "Image data refused: {refusal}"
        )))
    }

    /// Whether the inspection refused the data (the upload stopped early).
    pub(crate) fn refused(&self) -> bool {
        self.inspector.refusal().is_some()
    }

    /// Reads and drops the rest of a refused upload's body, so that the client, which is
    /// still sending, gets the 400 instead of a reset connection. The declared size and
    /// `image_size_cap` still bound it (and the HTTP layer's minimum rate bounds its time).
    pub(crate) fn discard_rest(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        self.peeked = None;
        while !self.eof {
            match self.inner.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.total = self.total.saturating_add(n as u64);
                    let over = self.expected.is_some_and(|e| self.total > e);
                    if over || self.total > self.cap {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads from the body into `buf`, counting and hashing; errors are recorded.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_counted(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    /// True when the body has no more data (reads one byte ahead if needed).
    pub(crate) fn at_eof(&mut self) -> Result<bool> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        match self.read_counted(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => {
                self.peeked = Some(b[0]);
                Ok(false)
            }
            Err(e) => Err(self.failure_or(&e)),
        }
    }

    /// Checks that the body is finished and matches the declared size. A backend calls it
    /// before it makes the data visible (rename, manifest, multipart completion);
    /// [`super::Stores::add`] calls it again after the backend, so a backend that forgot
    /// cannot keep a short image.
    pub fn finish(&mut self) -> Result<()> {
        // With a declared size, a byte beyond it already fails in `read_counted`.
        if !self.at_eof()? {
            return Err(Error::Internal(
                "upload finished before the end of the request body".into(),
            ));
        }
        match self.expected {
            Some(expected) if expected != self.total => {
                Err(self.size_mismatch(&self.total.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// The next part of at most `max` bytes. With `exact`, the body ending before `max`
    /// bytes is a failure (a size mismatch): the part was announced with that length.
    pub(crate) fn part(&mut self, max: u64, exact: bool) -> Part<'_, 'a> {
        Part {
            body: self,
            left: max,
            exact,
            sent: 0,
        }
    }

    /// Fills `buf` from the body as far as it goes, hashing; returns the byte count (less
    /// than `buf.len()` only at the end of the body).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.fill_counted(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    /// Fills `buf` as [`ImageBody::fill`] does, without hashing (the copy pipeline hashes
    /// on its own thread).
    fn fill_counted(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_counted(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(self.failure_or(&e)),
            }
        }
        Ok(filled)
    }

    /// Copies the rest of the body to `writer` through buffers of `buf_size` bytes (clamped
    /// to 4 KiB–16 MiB); returns the bytes written.
    ///
    /// MD5 runs on a second thread: an upload costs about as much CPU in MD5 as in copying,
    /// and one thread doing both tops out well below a fast disk (see bench/README.md). The
    /// copying thread fills a buffer and writes it; each filled buffer then goes to the
    /// hasher and comes back for reuse, so memory stays at `PIPELINE_BUFFERS` (4) buffers
    /// whatever the image size.
    ///
    /// Every write but the last is a whole buffer starting on a 4 KiB (`BUFFER_ALIGN`)
    /// boundary, so a writer can pass them to the disk without copying (`O_DIRECT`) when
    /// `buf_size` is a multiple of the alignment.
    ///
    /// Read errors and limits are the client's ([`Error::BadRequest`] saying whether the
    /// client disconnected, timed out or sent a broken body; [`Error::TooLarge`]); write
    /// errors are the store's: [`Error::Forbidden`] for permissions, else [`Error::Store`].
    pub fn copy_to<W: Write + ?Sized>(&mut self, writer: &mut W, buf_size: usize) -> Result<u64> {
        let size = buf_size.clamp(MIN_BUFFER_SIZE, MAX_BUFFER_SIZE);
        let (to_hasher, filled) = mpsc::sync_channel::<(AlignedBuf, usize)>(PIPELINE_BUFFERS);
        let (to_copier, emptied) = mpsc::sync_channel::<AlignedBuf>(PIPELINE_BUFFERS);
        let mut hasher = std::mem::take(&mut self.hasher);
        let (copied, hasher) = std::thread::scope(|scope| {
            let hashing = scope.spawn(move || {
                for (buf, n) in filled {
                    hasher.update(&buf.as_slice()[..n]);
                    // The copier may be gone (error or end): the buffer is simply dropped.
                    let _ = to_copier.send(buf);
                }
                hasher
            });
            let copied = self.copy_pipelined(writer, size, &to_hasher, &emptied);
            drop(to_hasher); // ends the hasher's loop
            (copied, hashing.join())
        });
        // A hasher that panicked leaves a fresh one: the checksum is then wrong, so fail.
        self.hasher =
            hasher.map_err(|_| Error::Internal("the MD5 thread of an upload panicked".into()))?;
        copied
    }

    /// The copying half of [`ImageBody::copy_to`]: fill, write, hand the buffer to the
    /// hasher.
    fn copy_pipelined<W: Write + ?Sized>(
        &mut self,
        writer: &mut W,
        size: usize,
        to_hasher: &mpsc::SyncSender<(AlignedBuf, usize)>,
        emptied: &mpsc::Receiver<AlignedBuf>,
    ) -> Result<u64> {
        let hasher_gone = || Error::Internal("the MD5 thread of an upload stopped".into());
        let mut unallocated = PIPELINE_BUFFERS;
        let mut written: u64 = 0;
        loop {
            let mut buf = match emptied.try_recv() {
                Ok(buf) => buf,
                Err(_) if unallocated > 0 => {
                    unallocated -= 1;
                    AlignedBuf::new(size)
                }
                Err(_) => emptied.recv().map_err(|_| hasher_gone())?,
            };
            let n = self.fill_counted(buf.as_mut_slice())?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf.as_slice()[..n])
                .map_err(|e| write_error(&e))?;
            written += n as u64;
            to_hasher.send((buf, n)).map_err(|_| hasher_gone())?;
            if n < size {
                break; // the body is at its end
            }
        }
        writer.flush().map_err(|e| write_error(&e))?;
        Ok(written)
    }
}

/// A bounded slice of the body, read by an HTTP client as a request body.
pub(crate) struct Part<'s, 'a> {
    body: &'s mut ImageBody<'a>,
    left: u64,
    exact: bool,
    sent: u64,
}

impl Part<'_, '_> {
    /// Bytes of this part handed out so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }
}

impl Read for Part<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.body.read_some(&mut buf[..want])?;
        if n == 0 && self.exact {
            let got = self.body.total.to_string();
            let err = self.body.size_mismatch(&got);
            return Err(self.body.fail(err));
        }
        self.left -= n as u64;
        self.sent += n as u64;
        Ok(n)
    }
}

/// The client-side error for a failed read of the request body.
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

#[cfg(test)]
mod tests;
