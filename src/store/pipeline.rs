//! The one path of upload data into the stores: [`ImageBody`] wraps the request body and
//! counts, hashes and caps every byte it hands to a backend, and checks it against the
//! declared size. [`super::Stores::add`] builds it; no backend reads a request body any
//! other way, so the size cap, the size check and the hashes are the same for every store.
//!
//! Every byte is hashed twice, in the one pass over the data: the MD5 `checksum` and the
//! `os_hash_value` with the configured [`HashAlgorithm`] (SHA-512 by default). A backend
//! takes the data in one of two ways:
//!
//! * [`ImageBody::copy_to`] (the file store): a few fixed-size, page-aligned buffers, with
//!   each hash on a thread of its own, so memory stays flat whatever the image size;
//! * [`ImageBody::part`] and [`ImageBody::fill`] (the object stores): bounded parts
//!   (segments, multipart parts) streamed one after another straight into HTTP requests.
//!   A part is read straight into the HTTP client's buffer and both hashes run inline;
//!   [`ImageBody::fill`] of a large buffer hashes `os_hash_value` on a second thread.
//!
//! The HTTP client reading a part sees only `io::Error`s. When the failure is the client's
//! (it disconnected, sent more or fewer bytes than it declared, went past `image_size_cap`)
//! the body keeps the real [`Error`] so the store can answer with it instead of a generic
//! "error writing to Swift".

use std::io::{self, Read, Write};
use std::sync::mpsc;

use super::checksum::{HashAlgorithm, Md5Sum, OsHash};
use crate::error::{Error, Result};
use crate::format::{Inspection, Inspector, Rules};

/// Smallest and largest copy buffer accepted; other values are clamped into this range.
const MIN_BUFFER_SIZE: usize = 4 * 1024;
const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;

/// Buffers of `buf_size` bytes in flight between the copying and the hashing threads.
const PIPELINE_BUFFERS: usize = 4;

/// Smallest buffer [`ImageBody::fill`] hashes on a second thread: below it, starting the
/// thread costs more than it saves.
const PARALLEL_FILL_MIN: usize = 1024 * 1024;

/// A filled buffer on its way through the copy pipeline, with its byte count.
type Filled = (AlignedBuf, usize);

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
    /// The MD5 `checksum`.
    md5: Md5Sum,
    /// The `os_hash_value`.
    os_hash: OsHash,
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
    /// The data is inspected against the formats' safety rules only and `os_hash_value` is
    /// a SHA-512; see [`ImageBody::with_rules`].
    #[cfg(test)]
    pub(crate) fn new(inner: &'a mut dyn Read, expected: Option<u64>, cap: u64) -> ImageBody<'a> {
        ImageBody::with_rules(
            inner,
            expected,
            cap,
            Rules::default(),
            HashAlgorithm::Sha512,
        )
    }

    /// Wraps a request body whose data must also fit `rules` (the declared formats), with
    /// `os_hash_value` computed by `algorithm`.
    pub(crate) fn with_rules(
        inner: &'a mut dyn Read,
        expected: Option<u64>,
        cap: u64,
        rules: Rules,
        algorithm: HashAlgorithm,
    ) -> ImageBody<'a> {
        ImageBody {
            inner,
            md5: Md5Sum::new(),
            os_hash: OsHash::new(algorithm),
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
        self.md5.hex()
    }

    /// The algorithm of [`ImageBody::os_hash_value`].
    pub fn os_hash_algo(&self) -> HashAlgorithm {
        self.os_hash.algorithm()
    }

    /// The multihash of everything handed out ([`ImageBody::os_hash_algo`]), lower-case hex.
    pub fn os_hash_value(&mut self) -> Result<String> {
        self.os_hash.hex()
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

    /// Reads from the body into `buf`, counting and hashing (both hashes inline: the bytes
    /// are the caller's, see [`ImageBody::part`]); errors are recorded.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_counted(buf)?;
        self.md5.update(&buf[..n]);
        self.os_hash.update(&buf[..n]);
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
    ///
    /// The part reads straight into the buffer of whoever reads it (the HTTP client), and
    /// both hashes run inline, on that thread: the reader reuses its buffer as soon as
    /// `read` returns, so handing the bytes to a hashing thread would mean copying every
    /// byte once more into a buffer of ours, or starting a scoped thread for every `read`
    /// (about 50 µs each on a busy two-core machine, some 40% of the SHA-512 of the HTTP
    /// client's 128 KiB buffer).
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
    ///
    /// For a buffer of 1 MiB or more (an S3 part of an upload of unknown size), the
    /// `os_hash_value` runs on a second thread over each piece as soon as it is read, while
    /// this thread reads on and computes the MD5: the buffer is ours for the whole call, so
    /// the hashing thread can read it in place. Smaller buffers are hashed inline.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < PARALLEL_FILL_MIN {
            let n = self.fill_counted(buf)?;
            self.md5.update(&buf[..n]);
            self.os_hash.update(&buf[..n]);
            return Ok(n);
        }
        let algorithm = self.os_hash.algorithm();
        let mut os_hash = std::mem::replace(&mut self.os_hash, OsHash::new(algorithm));
        let (pieces, read) = mpsc::channel::<&[u8]>();
        let (filled, os_hash) = std::thread::scope(|scope| {
            let hashing = scope.spawn(move || {
                for piece in read {
                    os_hash.update(piece);
                }
                os_hash
            });
            let filled = self.fill_pieces(buf, &pieces);
            drop(pieces); // ends the hashing loop
            (filled, hashing.join())
        });
        self.os_hash = os_hash.map_err(|_| hash_thread_died(algorithm))?;
        filled
    }

    /// The filling half of a parallel [`ImageBody::fill`]: reads into `buf` piece by piece,
    /// hashes each piece's MD5 here and sends it to the `os_hash_value` thread.
    fn fill_pieces<'b>(
        &mut self,
        buf: &'b mut [u8],
        to_hasher: &mpsc::Sender<&'b [u8]>,
    ) -> Result<usize> {
        let mut rest = buf;
        let mut filled = 0;
        while !rest.is_empty() {
            let n = match self.read_counted(rest) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(self.failure_or(&e)),
            };
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            let piece: &'b [u8] = piece;
            self.md5.update(piece);
            to_hasher
                .send(piece)
                .map_err(|_| hash_thread_died(self.os_hash.algorithm()))?;
            filled += n;
        }
        Ok(filled)
    }

    /// Fills `buf` as [`ImageBody::fill`] does, without hashing (the copy pipeline hashes
    /// on threads of its own).
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
    /// Each hash runs on a thread of its own: an upload costs about as much CPU in MD5, and
    /// again in SHA-512, as in copying, and one thread doing all three tops out well below
    /// a fast disk (see bench/README.md). The buffers go round a ring:
    ///
    /// ```text
    /// copier (read, write) -> MD5 thread -> os_hash thread -> copier (reuse)
    /// ```
    ///
    /// so the copier, the MD5 and the `os_hash_value` work at once on three different
    /// buffers, and memory stays at `PIPELINE_BUFFERS` (4) buffers whatever the image size.
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
        // Each channel can hold every buffer, so no send ever waits for long.
        let (to_md5, md5_in) = mpsc::sync_channel::<Filled>(PIPELINE_BUFFERS);
        let (to_os_hash, os_hash_in) = mpsc::sync_channel::<Filled>(PIPELINE_BUFFERS);
        let (to_copier, emptied) = mpsc::sync_channel::<Filled>(PIPELINE_BUFFERS);
        let mut md5 = std::mem::take(&mut self.md5);
        let algorithm = self.os_hash.algorithm();
        let mut os_hash = std::mem::replace(&mut self.os_hash, OsHash::new(algorithm));
        let (copied, md5, os_hash) = std::thread::scope(|scope| {
            let md5_thread = scope.spawn(move || {
                hash_stage(md5_in, &to_os_hash, |d| md5.update(d));
                md5
            });
            let os_hash_thread = scope.spawn(move || {
                hash_stage(os_hash_in, &to_copier, |d| os_hash.update(d));
                os_hash
            });
            let copied = self.copy_pipelined(writer, size, &to_md5, &emptied);
            drop(to_md5); // ends the MD5 thread's loop, which ends the next one's
            (copied, md5_thread.join(), os_hash_thread.join())
        });
        // A hasher that panicked leaves a fresh one: its hash is then wrong, so fail.
        self.md5 = md5.map_err(|_| hash_thread_died_named("MD5"))?;
        self.os_hash = os_hash.map_err(|_| hash_thread_died(algorithm))?;
        copied
    }

    /// The copying half of [`ImageBody::copy_to`]: fill, write, hand the buffer to the
    /// first hashing thread.
    fn copy_pipelined<W: Write + ?Sized>(
        &mut self,
        writer: &mut W,
        size: usize,
        to_hasher: &mpsc::SyncSender<Filled>,
        emptied: &mpsc::Receiver<Filled>,
    ) -> Result<u64> {
        let hasher_gone = || Error::Internal("a hashing thread of an upload stopped".into());
        let mut unallocated = PIPELINE_BUFFERS;
        let mut written: u64 = 0;
        loop {
            let mut buf = match emptied.try_recv() {
                Ok((buf, _)) => buf,
                Err(_) if unallocated > 0 => {
                    unallocated -= 1;
                    AlignedBuf::new(size)
                }
                Err(_) => emptied.recv().map_err(|_| hasher_gone())?.0,
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

/// One hashing thread of [`ImageBody::copy_to`]: hashes each filled buffer and passes it
/// on, until the stage before it hangs up. When the next stage is gone (it failed, or the
/// copier stopped) the buffer is dropped and the loop goes on, so the stages before it
/// never wait on it.
fn hash_stage(
    filled: mpsc::Receiver<Filled>,
    next: &mpsc::SyncSender<Filled>,
    mut update: impl FnMut(&[u8]),
) {
    for (buf, n) in filled {
        update(&buf.as_slice()[..n]);
        let _ = next.send((buf, n));
    }
}

/// The error of an upload whose `algorithm` hashing thread panicked.
fn hash_thread_died(algorithm: HashAlgorithm) -> Error {
    hash_thread_died_named(algorithm.name())
}

fn hash_thread_died_named(what: &str) -> Error {
    Error::Internal(format!("the {what} thread of an upload panicked"))
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
