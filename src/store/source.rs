//! The upload side shared by the object stores (Swift, S3): the request body as a
//! [`Source`] that hashes and counts every byte it hands out, enforces the size limit, and
//! can be cut into parts (segments, multipart parts) that are streamed one after another
//! straight into HTTP requests, without temp files and without holding a part in memory.
//!
//! The HTTP client reading a part sees only `io::Error`s. When the failure is the client's
//! (it disconnected, sent more or fewer bytes than it declared, went past `image_size_cap`)
//! the [`Source`] keeps the real [`Error`] so the store can answer with it instead of a
//! generic "error writing to Swift".

use std::io::{self, Read};

use super::checksum::Md5Sum;
use super::read_error;
use crate::error::{Error, Result};

/// The request body of an upload, hashed and counted as it is read.
pub(crate) struct Source<'a> {
    inner: &'a mut dyn Read,
    hasher: Md5Sum,
    total: u64,
    /// The declared size, if any: more or fewer bytes are a size mismatch.
    expected: Option<u64>,
    /// `image_size_cap`.
    cap: u64,
    /// The first failure of the client side, kept for the store to report.
    failure: Option<Error>,
    /// One byte read ahead by [`Source::at_eof`].
    peeked: Option<u8>,
    eof: bool,
}

impl<'a> Source<'a> {
    /// Wraps a request body. `expected` is the declared size; `cap` is `image_size_cap`.
    pub(crate) fn new(inner: &'a mut dyn Read, expected: Option<u64>, cap: u64) -> Source<'a> {
        Source {
            inner,
            hasher: Md5Sum::new(),
            total: 0,
            expected,
            cap,
            failure: None,
            peeked: None,
            eof: false,
        }
    }

    /// Bytes read from the body so far (after [`Source::finish`]: the image size).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes handed out to parts so far (a byte read ahead by [`Source::at_eof`] belongs
    /// to the next part).
    pub(crate) fn consumed(&self) -> u64 {
        self.total - u64::from(self.peeked.is_some())
    }

    /// The declared size, if any.
    pub(crate) fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// The client-side failure seen so far, if any (taken: asked once per failure).
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// The failure to report for an error that happened while a part was being sent: the
    /// client's, if the source saw one, else `store_error()`.
    pub(crate) fn blame(&mut self, store_error: impl FnOnce() -> Error) -> Error {
        self.take_failure().unwrap_or_else(store_error)
    }

    /// The MD5 of everything handed out, lower-case hex.
    pub(crate) fn checksum(&mut self) -> Result<String> {
        self.hasher.hex()
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let msg = e.message();
        if self.failure.is_none() {
            self.failure = Some(e);
        }
        io::Error::other(msg)
    }

    fn size_mismatch(&self, got: &str) -> Error {
        Error::BadRequest(format!(
            "Size mismatch: x-image-meta-size/Content-Length said {} bytes, got {got}",
            self.expected.unwrap_or(0)
        ))
    }

    /// Reads from the body into `buf`, hashing and counting; errors are recorded.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            return Ok(1); // already hashed and counted when peeked
        }
        if self.eof {
            return Ok(0);
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
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    /// True when the body has no more data (reads one byte ahead if needed).
    pub(crate) fn at_eof(&mut self) -> Result<bool> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        match self.read_some(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => {
                self.peeked = Some(b[0]);
                Ok(false)
            }
            Err(e) => Err(self
                .take_failure()
                .unwrap_or_else(|| Error::BadRequest(e.to_string()))),
        }
    }

    /// Checks, after the last part, that the body is finished and matches the declared size.
    pub(crate) fn finish(&mut self) -> Result<()> {
        // With a declared size, a byte beyond it already fails in `read_some`.
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
            source: self,
            left: max,
            exact,
            sent: 0,
        }
    }

    /// Fills `buf` from the body as far as it goes; returns the byte count (less than
    /// `buf.len()` only at the end of the body).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    return Err(self
                        .take_failure()
                        .unwrap_or_else(|| Error::BadRequest(e.to_string())));
                }
            }
        }
        Ok(filled)
    }
}

/// A bounded slice of the body, read by an HTTP client as a request body.
pub(crate) struct Part<'s, 'a> {
    source: &'s mut Source<'a>,
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
        let n = self.source.read_some(&mut buf[..want])?;
        if n == 0 && self.exact {
            let got = self.source.total.to_string();
            let err = self.source.size_mismatch(&got);
            return Err(self.source.fail(err));
        }
        self.left -= n as u64;
        self.sent += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
