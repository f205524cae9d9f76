//! Request-body framing and readers: `Content-Length`, `chunked`, `Expect: 100-continue`.
//!
//! The framing decides where the next request on a connection starts, so a lenient rule here
//! is a request-smuggling bug or a wedged connection. The rules are strict (`Content-Length:
//! +5` is a 400, not 5 bytes) and the readers report a cut-off upload as an error
//! (`UnexpectedEof`), so an image store never mistakes a truncated upload for a whole one.
//!
//! The reader borrows the connection and a [`BodyState`] owned by the worker: once the
//! handler has dropped its request, the worker looks at the state to decide whether the rest
//! of the body can be drained or the connection must be closed.
//!
//! A [`RateGuard`] (`client_body_min_rate`) watches every body read, the drain included:
//! a client trickling its upload below the rate is cut like one that stalls, and the
//! handler sees the error.

use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

use super::rate::RateGuard;
use super::write::is_tchar;
use super::{Headers, names_equal};

/// Longest chunk-size line (size plus extensions) we accept.
const MAX_CHUNK_LINE: usize = 4096;

/// What the server answers the interim `Expect: 100-continue` with.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (no framing header, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request's framing headers were refused: the status to answer and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    /// 400 for malformed framing, 501 for a transfer coding we do not implement.
    pub status: u16,
    /// Sent to the client as the body of the refusal.
    pub message: &'static str,
}

fn refuse(status: u16, message: &'static str) -> Refusal {
    Refusal { status, message }
}

/// Works out the body framing from the request headers.
///
/// Rules (RFC 9112 §6, strict where it allows a choice):
/// - every `Content-Length` value (across fields and comma lists) must be plain digits and
///   all must be equal, else 400;
/// - `Transfer-Encoding` must be exactly `chunked`: any other coding is 501, an empty list or
///   `chunked` twice is 400, and it is 400 in an HTTP/1.0 request;
/// - `Transfer-Encoding` together with `Content-Length` is 400: RFC 7230 would let chunked
///   win, but no honest client sends both and it is the classic smuggling vector;
/// - `Content_Length`/`Transfer_Encoding` spelt with `_` are 400: elsewhere we treat `_` as
///   `-`, but a proxy in front would not, so the two could disagree on the framing.
pub(super) fn framing(headers: &Headers, http10: bool) -> Result<Framing, Refusal> {
    let mut lengths = Vec::new();
    let mut codings = Vec::new();
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.push(value);
        } else if names_equal(name, "content-length") || names_equal(name, "transfer-encoding") {
            return Err(refuse(400, "framing header names may not contain '_'"));
        }
    }
    let length = content_length(&lengths)?;
    if codings.is_empty() {
        return Ok(match length {
            None | Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
        });
    }
    if http10 {
        return Err(refuse(400, "Transfer-Encoding is not allowed in HTTP/1.0"));
    }
    if length.is_some() {
        return Err(refuse(
            400,
            "both Transfer-Encoding and Content-Length were sent",
        ));
    }
    transfer_coding(&codings)
}

fn content_length(values: &[&str]) -> Result<Option<u64>, Refusal> {
    let mut found: Option<u64> = None;
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(400, "Content-Length is not a non-negative integer"));
        }
        let n: u64 = item
            .parse()
            .map_err(|_| refuse(400, "Content-Length is too large"))?;
        if found.is_some_and(|f| f != n) {
            return Err(refuse(400, "conflicting Content-Length values"));
        }
        found = Some(n);
    }
    Ok(found)
}

fn transfer_coding(values: &[&str]) -> Result<Framing, Refusal> {
    let codings: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|c| c.trim_matches([' ', '\t']))
        .filter(|c| !c.is_empty())
        .collect();
    let known = |c: &&str| c.eq_ignore_ascii_case("chunked");
    if !codings.iter().all(known) {
        return Err(refuse(501, "unsupported transfer coding (only chunked)"));
    }
    if codings.len() != 1 {
        return Err(refuse(400, "Transfer-Encoding must be exactly chunked"));
    }
    Ok(Framing::Chunked)
}

/// Where the body reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fixed length, this many bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk, this many bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk, expecting trailer lines up to an empty line.
    Trailers,
    /// The whole body has been read.
    Done,
    /// A read failed: the connection's framing is lost.
    Failed,
}

/// The progress of one request body, owned by the worker and lent to the [`BodyReader`].
#[derive(Debug)]
pub(super) struct BodyState {
    phase: Phase,
    continue_pending: bool,
    trailer_limit: usize,
    guard: RateGuard,
}

impl BodyState {
    /// A fresh state. `expect_continue` is honoured only when there is a body;
    /// `trailer_limit` bounds the bytes of chunked trailers.
    pub(super) fn new(framing: Framing, expect_continue: bool, trailer_limit: usize) -> Self {
        let phase = match framing {
            Framing::None | Framing::Length(0) => Phase::Done,
            Framing::Length(n) => Phase::Length(n),
            Framing::Chunked => Phase::ChunkSize,
        };
        BodyState {
            phase,
            continue_pending: expect_continue && phase != Phase::Done,
            trailer_limit,
            guard: RateGuard::off(GUARDED),
        }
    }

    /// Requires the body to arrive at `rate` bytes/s or more, averaged over each `window`
    /// of time spent waiting for it (see [`RateGuard`]); 0 for either turns the check off,
    /// as it is by default. A body below the rate fails with a `TimedOut` error and leaves
    /// the state [failed](Self::is_failed).
    pub(super) fn with_min_rate(mut self, rate: u64, window: Duration) -> Self {
        self.guard = RateGuard::new(GUARDED, rate, window);
        self
    }

    /// True once the whole body has been read.
    pub(super) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True after a read error: the rest of the connection cannot be trusted.
    pub(super) fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// True while the client still waits for `100 Continue` (nobody read the body).
    pub(super) fn continue_pending(&self) -> bool {
        self.continue_pending
    }

    /// Bytes left when the framing says so in advance (`Content-Length`), else `None`.
    pub(super) fn known_remaining(&self) -> Option<u64> {
        match self.phase {
            Phase::Length(n) => Some(n),
            Phase::Done => Some(0),
            _ => None,
        }
    }
}

/// What the rate guard names in its error.
const GUARDED: &str = "request body";

/// Reads one request body off a connection, decoding chunks and answering `100-continue`.
pub(super) struct BodyReader<'a> {
    src: &'a mut (dyn BufRead + Send),
    out: &'a mut (dyn Write + Send),
    state: &'a mut BodyState,
}

impl<'a> BodyReader<'a> {
    /// A reader over `src`; `out` is the connection's write side, used only for
    /// `100 Continue`.
    pub(super) fn new(
        src: &'a mut (dyn BufRead + Send),
        out: &'a mut (dyn Write + Send),
        state: &'a mut BodyState,
    ) -> Self {
        BodyReader { src, out, state }
    }

    /// Reads and discards up to `limit` more payload bytes. True when that reached the end
    /// of the body, so the connection can serve another request.
    pub(super) fn drain(mut self, limit: u64) -> bool {
        if io::copy(&mut (&mut self).take(limit), &mut io::sink()).is_err() {
            return false;
        }
        // A chunked body may still have its last chunk and trailers to go: one more read
        // walks through them, and any payload byte means the limit was too small.
        let mut one = [0u8; 1];
        matches!(self.read(&mut one), Ok(0)) && self.state.is_done()
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if self.state.continue_pending {
            self.state.continue_pending = false;
            self.out.write_all(CONTINUE)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// [`Self::step`] under the rate guard. Payload and framing reads alike wait on the
    /// client. A socket timeout (a stall of `read_timeout`) still fails the body, as it
    /// always did: the guard only names the rate when the stall also put the body below it.
    fn guarded_step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        let result = self.step(buf);
        let moved = match &result {
            Ok(n) => *n as u64,
            Err(e) if is_socket_timeout(e) => 0,
            Err(_) => return result,
        };
        match self.state.guard.account(moved, started.elapsed()) {
            Ok(()) => result,
            Err(cut) => {
                log::info!(target: super::server::LOG_TARGET, "request body cut: {cut}");
                Err(cut)
            }
        }
    }

    /// Advances the state machine until some payload is read or the body ends.
    fn step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state.phase {
                Phase::Length(left) => {
                    let n = read_some(self.src, buf, left)?;
                    self.state.phase = next_phase(left - n as u64, Phase::Length, Phase::Done);
                    return Ok(n);
                }
                Phase::ChunkSize => {
                    let size = read_chunk_size(self.src)?;
                    self.state.phase = next_phase(size, Phase::ChunkData, Phase::Trailers);
                }
                Phase::ChunkData(left) => {
                    let n = read_some(self.src, buf, left)?;
                    self.state.phase =
                        next_phase(left - n as u64, Phase::ChunkData, Phase::ChunkEnd);
                    return Ok(n);
                }
                Phase::ChunkEnd => {
                    expect_crlf(self.src)?;
                    self.state.phase = Phase::ChunkSize;
                }
                Phase::Trailers => {
                    skip_trailers(self.src, self.state.trailer_limit)?;
                    self.state.phase = Phase::Done;
                }
                Phase::Done => return Ok(0),
                Phase::Failed => return Err(failed_before()),
            }
        }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state.phase {
            Phase::Done => return Ok(0),
            Phase::Failed => return Err(failed_before()),
            _ if buf.is_empty() => return Ok(0),
            _ => {}
        }
        let result = self.send_continue().and_then(|()| self.guarded_step(buf));
        if let Err(e) = &result {
            // An interrupted read consumed nothing; anything else may have left us in the
            // middle of a line, so the framing is lost.
            if e.kind() != io::ErrorKind::Interrupted {
                self.state.phase = Phase::Failed;
            }
        }
        result
    }
}

/// A blocking socket read that ran into its timeout (`SO_RCVTIMEO`): `EAGAIN` on Linux.
fn is_socket_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn next_phase(left: u64, more: fn(u64) -> Phase, end: Phase) -> Phase {
    if left == 0 { end } else { more(left) }
}

fn failed_before() -> io::Error {
    io::Error::other("request body unusable after an earlier error")
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn cut_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "request body ended before its declared length",
    )
}

/// One read of at most `left` bytes; end of input here is always an error.
fn read_some(src: &mut (dyn BufRead + Send), buf: &mut [u8], left: u64) -> io::Result<usize> {
    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
    match src.read(&mut buf[..want])? {
        0 => Err(cut_off()),
        n => Ok(n),
    }
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The line, with its `\n`, was appended.
    Complete,
    /// `limit` bytes were read without a `\n`.
    TooLong,
    /// The input ended first (what was read is appended).
    Eof,
}

/// Appends one line (up to and including `\n`) to `out`, reading at most `limit` bytes.
pub(super) fn read_line(
    src: &mut dyn BufRead,
    limit: usize,
    out: &mut Vec<u8>,
) -> io::Result<Line> {
    let start = out.len();
    let n = src.take(limit as u64).read_until(b'\n', out)?;
    Ok(if out[start..].ends_with(b"\n") {
        Line::Complete
    } else if n >= limit {
        Line::TooLong
    } else {
        Line::Eof
    })
}

/// The kinds of line in chunked framing, for [`read_framing_line`]'s messages.
#[derive(Debug, Clone, Copy)]
enum LineKind {
    ChunkSize,
    Trailer,
}

impl LineKind {
    fn too_long(self) -> &'static str {
        match self {
            LineKind::ChunkSize => "chunk-size line too long",
            LineKind::Trailer => "chunked trailers too large",
        }
    }

    fn bare_lf(self) -> &'static str {
        match self {
            LineKind::ChunkSize => "chunk-size line must end with CRLF, not a bare LF",
            LineKind::Trailer => "chunked trailer line must end with CRLF, not a bare LF",
        }
    }
}

/// Reads a line that must be complete, within `limit` bytes and end in CRLF; returns it
/// without the CRLF. A bare LF is refused rather than tolerated: a proxy in front that reads
/// the line differently would disagree with us on where the chunk ends (RFC 9112 §7.1).
fn read_framing_line(
    src: &mut (dyn BufRead + Send),
    limit: usize,
    kind: LineKind,
) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    match read_line(src, limit, &mut line)? {
        Line::Complete => {}
        Line::TooLong => return Err(invalid(kind.too_long())),
        Line::Eof => return Err(cut_off()),
    }
    line.pop();
    if line.pop() != Some(b'\r') {
        return Err(invalid(kind.bare_lf()));
    }
    Ok(line)
}

fn read_chunk_size(src: &mut (dyn BufRead + Send)) -> io::Result<u64> {
    let line = read_framing_line(src, MAX_CHUNK_LINE, LineKind::ChunkSize)?;
    parse_chunk_size(&line).map_err(invalid)
}

/// Most hex digits of a chunk size: 16 fill a `u64`, so more could only overflow.
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Parses a chunk-size line without its CRLF (RFC 9112 §7.1.1):
/// `1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )`, where a name is a token
/// and a value a token or a quoted-string. The extensions are checked, then ignored: a
/// lenient parser here would let a malformed line hide a second request from a proxy.
pub(super) fn parse_chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("invalid chunk size: expected hexadecimal digits");
    }
    if digits > MAX_CHUNK_SIZE_DIGITS {
        return Err("invalid chunk size: more than 16 hexadecimal digits");
    }
    let size = line[..digits]
        .iter()
        .try_fold(0u64, |n, &b| {
            let d = char::from(b).to_digit(16)?;
            n.checked_mul(16)?.checked_add(u64::from(d))
        })
        .ok_or("invalid chunk size")?;
    check_extensions(&line[digits..])?;
    Ok(size)
}

/// Checks the `*( BWS ";" BWS name [ BWS "=" BWS value ] )` after a chunk size.
fn check_extensions(mut rest: &[u8]) -> Result<(), &'static str> {
    loop {
        rest = skip_bws(rest);
        let Some(after) = rest.strip_prefix(b";") else {
            return if rest.is_empty() {
                Ok(())
            } else {
                Err("invalid chunk size: unexpected characters after the size")
            };
        };
        rest = skip_bws(after);
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err("invalid chunk extension: the name must be a token");
        }
        rest = &rest[name..];
        let after_ws = skip_bws(rest);
        if let Some(value) = after_ws.strip_prefix(b"=") {
            rest = skip_value(skip_bws(value))?;
        }
    }
}

/// Skips a chunk-extension value (a token or a quoted-string), returning what follows it.
fn skip_value(rest: &[u8]) -> Result<&[u8], &'static str> {
    let bad = "invalid chunk extension: the value must be a token or a quoted-string";
    let Some(mut quoted) = rest.strip_prefix(b"\"") else {
        let token = rest.iter().take_while(|&&b| is_tchar(b)).count();
        return if token == 0 {
            Err(bad)
        } else {
            Ok(&rest[token..])
        };
    };
    loop {
        match quoted {
            [b'"', tail @ ..] => return Ok(tail),
            [b'\\', c, tail @ ..] if is_quotable(*c) => quoted = tail,
            [c, tail @ ..] if is_qdtext(*c) => quoted = tail,
            _ => return Err(bad),
        }
    }
}

/// `BWS`: optional spaces and tabs.
fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// RFC 9110 `qdtext`: what a quoted-string holds unescaped.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// What may follow a backslash in a quoted-string (`HTAB / SP / VCHAR / obs-text`).
fn is_quotable(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

/// Reads the CRLF that must follow a chunk's data.
fn expect_crlf(src: &mut (dyn BufRead + Send)) -> io::Result<()> {
    let mut end = [0u8; 2];
    match src.read_exact(&mut end) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(cut_off()),
        Err(e) => return Err(e),
    }
    match &end {
        b"\r\n" => Ok(()),
        [b'\n', _] => Err(invalid(
            "chunk data must be followed by CRLF, not a bare LF",
        )),
        _ => Err(invalid(
            "chunk data not followed by CRLF (longer than its chunk size)",
        )),
    }
}

/// Most trailer fields we read through, whatever their size: a bound on the work one body
/// can cause besides the byte budget.
const MAX_TRAILER_FIELDS: usize = 64;

/// Reads trailer fields up to the empty line and drops them: nothing in Glance uses them.
/// Each must still be a well-formed field line (`token ":" value`, no obsolete folding),
/// within `limit` bytes and [`MAX_TRAILER_FIELDS`] fields in all.
fn skip_trailers(src: &mut (dyn BufRead + Send), limit: usize) -> io::Result<()> {
    let mut budget = limit;
    for _ in 0..=MAX_TRAILER_FIELDS {
        let line = read_framing_line(src, budget.saturating_add(2), LineKind::Trailer)?;
        if line.is_empty() {
            return Ok(());
        }
        check_trailer_field(&line).map_err(invalid)?;
        budget = budget
            .checked_sub(line.len() + 2)
            .ok_or_else(|| invalid("chunked trailers too large"))?;
    }
    Err(invalid("too many chunked trailer fields"))
}

/// Checks one trailer line: `field-name ":" OWS field-value OWS` (RFC 9112 §5).
pub(super) fn check_trailer_field(line: &[u8]) -> Result<(), &'static str> {
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    if name == 0 || line.get(name) != Some(&b':') {
        return Err("invalid chunked trailer field: expected 'name: value'");
    }
    let value_ok = line[name + 1..]
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7E).contains(&b) || b >= 0x80);
    if value_ok {
        Ok(())
    } else {
        Err("invalid chunked trailer field: control character in the value")
    }
}

#[cfg(test)]
mod tests;
